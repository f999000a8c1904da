"""The insights' charts, drawn here as SVG (issue 27): stacked columns over periods, stacked bars over labels.

Why our own few lines rather than a library: the page shows up to seven charts at a time, and pygal (the
server-side candidate) took 30 ms to draw one 30-day chart here and writes an inline script and a stylesheet
into each; in-page libraries (uPlot, Vega-Lite) need the page to run chart code over data it fetched. An SVG
made of rectangles and text costs well under a millisecond, runs nothing, fetches nothing (air-gapped
installs), is shown as an image under the page's Content-Security-Policy, and carries its title and a
summary for assistive technology; every chart's numbers are a table beside it on the page.

Colours are the Okabe-Ito palette, told apart by people with colour vision deficiencies; each bar also has
a tooltip (`<title>`) with its label, series and value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442")
WIDTH = 720  # the default; the page asks for the width it shows a chart at, so its text stays 12 px
MIN_WIDTH, MAX_WIDTH = 280, 1600
FONT = 'font-family="system-ui, sans-serif" font-size="12" fill="#333"'


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _ticks(largest: float) -> list[float]:
    """Round values from 0 to at least `largest`, four or five of them."""
    if largest <= 0:
        return [0, 1]
    raw = largest / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1)
    return [step * i for i in range(math.ceil(largest / step) + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:.3g}"


def _frame(size: tuple[int, int], title: str, summary: str, body: list[str], empty: bool) -> str:
    width, height = size
    if empty:
        body.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" {FONT}>Nothing in this range</text>'
        )
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-labelledby="title desc">',
            f'<title id="title">{escape(title)}</title>',
            f'<desc id="desc">{escape(summary)}</desc>',
            f'<rect width="{width}" height="{height}" fill="#fff"/>',
            *body,
            "</svg>",
        ]
    )


def _legend(series: Sequence[Series], y: int) -> list[str]:
    parts, x = [], 56
    for index, each in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{y}" {FONT}>{escape(each.name)}</text>')
        x += 28 + 7 * len(each.name)
    return parts


def columns(title: str, summary: str, categories: Sequence[str], series: Sequence[Series], width: int = WIDTH) -> str:
    """Stacked columns, one per category (a day, a week, a bucket), a segment per series."""
    height, top, bottom, left, right = 300, 34, 250, 56, width - 12
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    ticks = _ticks(max(totals, default=0))
    scale = (bottom - top) / ticks[-1]
    body = _legend(series, 18)
    for tick in ticks:
        y = bottom - tick * scale
        body.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_number(tick)}</text>')
    slot = (right - left) / max(len(categories), 1)
    every = math.ceil(len(categories) / max((right - left) // 50, 1)) or 1  # a label every 50 px at most
    for i, category in enumerate(categories):
        x, base = left + i * slot + slot * 0.1, float(bottom)
        for index, each in enumerate(series):
            value = each.values[i]
            if value:
                h = value * scale
                base -= h
                tip = escape(f"{category}: {each.name} {_number(value)}")
                body.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[index % len(PALETTE)]}"><title>{tip}</title></rect>'
                )
        if i % every == 0:
            cx = left + (i + 0.5) * slot
            body.append(
                f'<text x="{cx:.1f}" y="{bottom + 14}" text-anchor="end" transform="rotate(-35 {cx:.1f} '
                f'{bottom + 14})" {FONT}>{escape(category)}</text>'
            )
    body.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#333"/>')
    return _frame((width, height), title, summary, body, not any(totals))


def bars(title: str, summary: str, labels: Sequence[str], series: Sequence[Series], width: int = WIDTH) -> str:
    """Stacked horizontal bars, one per label (a category, a model), a segment per series."""
    row, top, left, right = 24, 34, min(220, width * 2 // 5), width - 60
    room = left // 7  # characters of a label that fit beside the bars
    height = top + row * max(len(labels), 1) + 24
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    scale = (right - left) / max(max(totals, default=0), 1)
    body = _legend(series, 18)
    for i, label in enumerate(labels):
        y, x = top + i * row, float(left)
        shown = label if len(label) <= room else label[: room - 1] + "…"
        body.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" {FONT}>{escape(shown)}</text>')
        for index, each in enumerate(series):
            value = each.values[i]
            if value:
                w = value * scale
                tip = escape(f"{label}: {each.name} {_number(value)}")
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{PALETTE[index % len(PALETTE)]}"><title>{tip}</title></rect>'
                )
                x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 16}" {FONT}>{_number(totals[i])}</text>')
    body.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - 24}" stroke="#333"/>')
    return _frame((width, height), title, summary, body, not any(totals))
