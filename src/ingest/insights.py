"""`GET /api/admin/v1/insights`: what the ingest received, per day or week, for the charts on /admin (issue 27).

Query: `since`, `until` (days, YYYY-MM-DD, inclusive; the last 30 days by default, at most 731), `by`
(`day` or `week`; weeks start on Monday; by default days up to 92 of them, else weeks). The answer has each
chart's title, a one-sentence summary, its series and the table of its numbers, and the latest refused
uploads. `GET /api/admin/v1/insights/<chart>.svg` with the same query draws one chart (`charts`).

Everything comes from the per-day counts the index keeps (`sql_insights`): a few rows a day, so a year
costs the same whether the ingest holds a thousand records or millions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from ingest import charts
from ingest.admin import check_admin
from ingest.charts import Series
from ingest.context import INGEST
from ingest.sql_insights import SERIES
from lightspeed_common.errors import BadRequest, NotFound

DEFAULT_DAYS = 30
MAX_DAYS = 731
DAILY_UP_TO = 92
TOP_MODELS = 6
REFUSALS_SHOWN = 20
TURN_BUCKETS = ((1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 5, "4-5"), (6, 10, "6-10"), (11, 20, "11-20"))
KIND_ORDER = {"transcripts": 0, "feedback": 1}
SVG_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"}


@dataclass(frozen=True)
class Range:
    since: date
    until: date
    by: str  # day or week

    def periods(self) -> list[date]:
        first = self.start_of(self.since)
        step = timedelta(days=7 if self.by == "week" else 1)
        return [first + step * i for i in range((self.until - first) // step + 1)]

    def start_of(self, day: date) -> date:
        return day - timedelta(days=day.weekday()) if self.by == "week" else day

    @property
    def head(self) -> str:
        """The period column's header: a period is named by its first day."""
        return "Week of" if self.by == "week" else "Day"


def insight_range(query: Any, today: date) -> Range:
    """The range a request asks for, or BadRequest naming what is wrong."""
    days: dict[str, date] = {}
    for name in ("since", "until"):
        value = query.get(name)
        if value:
            try:
                days[name] = date.fromisoformat(value)
            except ValueError:
                raise BadRequest(f"Invalid {name}", f"{name} must be a day, YYYY-MM-DD") from None
    until = days.get("until", today)
    since = days.get("since", until - timedelta(days=DEFAULT_DAYS - 1))
    if since > until:
        raise BadRequest("Invalid range", f"since ({since}) is after until ({until})")
    if (until - since).days + 1 > MAX_DAYS:
        raise BadRequest("Invalid range", f"a range covers at most {MAX_DAYS} days")
    by = query.get("by") or ("day" if (until - since).days < DAILY_UP_TO else "week")
    if by not in ("day", "week"):
        raise BadRequest("Invalid by", "by must be day or week")
    return Range(since, until, by)


class Counts:
    """The day counts of a range, summed per period or over the whole range."""

    def __init__(self, span: Range, rows: list[tuple[str, str, str, int]]) -> None:
        self.span = span
        self.periods = span.periods()
        self.names = [period.isoformat() for period in self.periods]
        days = (span.until - span.since).days + 1
        moments = (span.since + timedelta(days=i) for i in range(days))
        position = {period: i for i, period in enumerate(self.periods)}
        index = {day.isoformat(): position[span.start_of(day)] for day in moments}  # a day's text -> its period
        self.by_period: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(self.periods))
        self.total: dict[tuple[str, str], int] = defaultdict(int)
        for series, day, label, n in rows:
            period = index.get(day)
            if period is None:
                continue
            self.by_period[series, label][period] += n
            self.total[series, label] += n

    def labels(self, series: str) -> list[str]:
        """The labels `series` has in the range, most counted first."""
        found = {label: n for (name, label), n in self.total.items() if name == series and n}
        return sorted(found, key=lambda label: (-found[label], label))

    def values(self, series: str, label: str) -> list[int]:
        return list(self.by_period.get((series, label), [0] * len(self.periods)))


def _share(positive: int, negative: int) -> str:
    return f"{round(100 * positive / (positive + negative))}%" if positive + negative else "-"


def _chart(
    chart_id: str, title: str, summary: str, *, kind: str, axis: tuple[str, list[str]], series: list[Series]
) -> dict[str, Any]:
    """A chart's description and the table of its numbers (a row per category, a column per series)."""
    return {
        "id": chart_id,
        "title": title,
        "summary": summary,
        "kind": kind,
        "categories": axis[1],
        "series": [{"name": s.name, "values": list(s.values)} for s in series],
        "table": {
            "columns": [axis[0], *(s.name for s in series)],
            "rows": [[category, *(s.values[i] for s in series)] for i, category in enumerate(axis[1])],
        },
    }


def _over_time(counts: Counts, chart_id: str, title: str, summary: str, series: list[Series]) -> dict[str, Any]:
    """A chart of stacked columns, one per day or week of the range."""
    return _chart(chart_id, title, summary, kind="columns", axis=(counts.span.head, counts.names), series=series)


def _received(counts: Counts) -> dict[str, Any]:
    kinds = sorted(counts.labels("records"), key=lambda k: (KIND_ORDER.get(k, len(KIND_ORDER)), k))
    series = [Series(kind, counts.values("records", kind)) for kind in kinds or ["transcripts", "feedback"]]
    total = ", ".join(f"{sum(s.values)} {s.name}" for s in series)
    return _over_time(counts, "received", "Records received", f"Records received: {total}.", series)


def _uploads(counts: Counts) -> dict[str, Any]:
    refused = [sum(x) for x in zip(*(counts.values("refused", o) for o in counts.labels("refused")), strict=True)]
    series = [Series("stored", counts.values("uploads", "")), Series("refused", refused or [0] * len(counts.names))]
    summary = (
        f"Uploads: {sum(series[0].values)} stored, {sum(series[1].values)} refused (their senders quarantine them)."
    )
    return _over_time(counts, "uploads", "Uploads", summary, series)


def _feedback(counts: Counts) -> dict[str, Any]:
    positive, negative = counts.values("feedback", "positive"), counts.values("feedback", "negative")
    series = [Series("positive", positive), Series("negative", negative)]
    if any(none := counts.values("feedback", "none")):
        series.append(Series("no sentiment", none))
    chart = _over_time(counts, "feedback", "Feedback", "", series)
    chart["table"]["columns"].append("Positive share")
    for row, pos, neg in zip(chart["table"]["rows"], positive, negative, strict=True):
        row.append(_share(pos, neg))
    p, n = sum(positive), sum(negative)
    chart["summary"] = f"Feedback: {p} positive, {n} negative ({_share(p, n)} positive)."
    return chart


def _categories(counts: Counts) -> dict[str, Any]:
    labels = counts.labels("category")
    series = [Series("feedback", [counts.total["category", label] for label in labels])]
    top = ", ".join(f"{label} {counts.total['category', label]}" for label in labels[:3]) or "none"
    summary = f"Feedback by category: {top}."
    return _chart("categories", "Feedback by category", summary, kind="bars", axis=("Category", labels), series=series)


def _models(counts: Counts) -> dict[str, Any]:
    found = sorted(
        {label for name in ("model_positive", "model_negative", "model_none") for label in counts.labels(name)},
        key=lambda m: (-sum(counts.total[f"model_{s}", m] for s in ("positive", "negative", "none")), m),
    )
    positive = [counts.total["model_positive", m] for m in found]
    negative = [counts.total["model_negative", m] for m in found]
    labels = [m or "unknown (no transcript)" for m in found]
    series = [Series("positive", positive), Series("negative", negative)]
    chart = _chart("models", "Feedback by model", "", kind="bars", axis=("Model", labels), series=series)
    chart["table"]["columns"].append("Positive share")
    for row, pos, neg in zip(chart["table"]["rows"], positive, negative, strict=True):
        row.append(_share(pos, neg))
    shares = ", ".join(
        f"{label} {_share(p, n)} positive" for label, p, n in zip(labels, positive, negative, strict=True)
    )
    chart["summary"] = f"Feedback by the model that answered: {shares or 'none'}."
    return chart


def _conversations(counts: Counts) -> dict[str, Any]:
    series = [Series("conversations", counts.values("conversations", ""))]
    summary = f"Conversations started: {sum(series[0].values)}."
    return _over_time(counts, "conversations", "Conversations started", summary, series)


def _turns(counts: Counts) -> dict[str, Any]:
    buckets = [label for _, _, label in TURN_BUCKETS] + [f"{TURN_BUCKETS[-1][1] + 1}+"]
    values = [0] * len(buckets)
    for label in counts.labels("turns"):
        turns = int(label)
        slot = next((i for i, (low, high, _) in enumerate(TURN_BUCKETS) if low <= turns <= high), len(buckets) - 1)
        values[slot] += counts.total["turns", label]
    summary = "Conversations by turns: " + ", ".join(f"{b}: {v}" for b, v in zip(buckets, values, strict=True)) + "."
    series = [Series("conversations", values)]
    return _chart("turns", "Turns per conversation", summary, kind="columns", axis=("Turns", buckets), series=series)


def _telemetry(counts: Counts) -> dict[str, Any]:
    models = counts.labels("telemetry")
    series = [Series(model, counts.values("telemetry", model)) for model in models[:TOP_MODELS]]
    if rest := models[TOP_MODELS:]:
        other = [sum(x) for x in zip(*(counts.values("telemetry", m) for m in rest), strict=True)]
        series.append(Series(f"{len(rest)} other models", other))
    total = ", ".join(f"{s.name} {sum(s.values)}" for s in series) or "none"
    summary = f"Telemetry events by embedding model: {total}."
    return _over_time(counts, "telemetry", "Embedding models reported", summary, series)


def insights(span: Range, rows: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
    counts = Counts(span, rows)
    return [
        _received(counts),
        _uploads(counts),
        _feedback(counts),
        _categories(counts),
        _models(counts),
        _conversations(counts),
        _turns(counts),
        _telemetry(counts),
    ]


# The counts each chart is drawn from (one chart's image reads only those).
SERIES_OF = {
    "received": ("records",),
    "uploads": ("uploads", "refused"),
    "feedback": ("feedback",),
    "categories": ("category",),
    "models": ("model_positive", "model_negative", "model_none"),
    "conversations": ("conversations",),
    "turns": ("turns",),
    "telemetry": ("telemetry",),
}


async def _charts(request: web.Request, series: tuple[str, ...] = SERIES) -> tuple[Range, list[dict[str, Any]]]:
    """The charts of the range the request asks for (its caller checked the admin key)."""
    ingest = request.app[INGEST]
    span = insight_range(request.query, datetime.now(UTC).date())
    since, until = span.since.isoformat(), span.until.isoformat()
    return span, insights(span, await ingest.db.run(ingest.db.storage.daily_counts, since, until, series))


async def overview(request: web.Request) -> web.Response:
    check_admin(request)
    span, found = await _charts(request)
    storage = request.app[INGEST].db.storage
    before = (span.until + timedelta(days=1)).isoformat()
    refusals = await request.app[INGEST].db.run(storage.recent_refusals, span.since.isoformat(), before, REFUSALS_SHOWN)
    body = {"since": span.since.isoformat(), "until": span.until.isoformat(), "by": span.by, "charts": found}
    body["refusals"] = refusals
    return web.json_response(body, headers={"Cache-Control": "no-store"})


DRAW: dict[str, Callable[[str, str, list[str], list[Series], int], str]] = {
    "columns": charts.columns,
    "bars": charts.bars,
}


def _width(query: Any) -> int:
    try:
        width = int(query.get("width", str(charts.WIDTH)))
    except ValueError:
        width = 0
    if not charts.MIN_WIDTH <= width <= charts.MAX_WIDTH:
        raise BadRequest("Invalid width", f"width must be a whole number from {charts.MIN_WIDTH} to {charts.MAX_WIDTH}")
    return width


async def chart(request: web.Request) -> web.Response:
    check_admin(request)
    width = _width(request.query)
    name = request.match_info["chart"]
    if name not in SERIES_OF:
        raise NotFound("No such chart", f"charts: {', '.join(SERIES_OF)}")
    _, found = await _charts(request, SERIES_OF[name])
    wanted = next(c for c in found if c["id"] == name)
    series = [Series(s["name"], s["values"]) for s in wanted["series"]]
    svg = DRAW[wanted["kind"]](wanted["title"], wanted["summary"], wanted["categories"], series, width)
    return web.Response(text=svg, content_type="image/svg+xml", headers=SVG_HEADERS)
