"""Answers made of the documents' own sentences: the few that best answer the question.

The best-scoring units of the retrieved passages are taken while they score
close to the best one, within a length budget. A unit that leans on the one
before it ("It is retried...", a code block after its introduction) brings that
one along; a unit ending with a colon brings what it introduces, and one whose
next sentence leans on it ("They are told...") brings that sentence. The result is
shown in document order, grouped by section, each group followed by where it
comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lightspeed.answers.chunking import Passage, Unit
from lightspeed.answers.retrieval import DocumentIndex, Retrieval

MAX_UNITS = 4  # units chosen by their score (the units they depend on come on top)
MAX_CHARS = 700  # the chosen units' length budget
SCORE_MARGIN = 0.15  # a unit is taken while it scores within this of the best


@dataclass(frozen=True)
class Excerpt:
    text: str  # Markdown
    citation: str  # the section's heading path


def _chosen(retrieval: Retrieval) -> set[int]:
    best = retrieval.units[0].score
    chosen: set[int] = set()
    size = 0
    for scored in retrieval.units:
        if len(chosen) >= MAX_UNITS or scored.score < best - SCORE_MARGIN:
            break
        if chosen and size + len(scored.unit.text) > MAX_CHARS:
            continue
        chosen.add(scored.number)
        size += len(scored.unit.text)
    return chosen


def _with_dependencies(index: DocumentIndex, chosen: set[int]) -> list[int]:
    """`chosen` and the units they need to be understood, in document order, within the same section:
    the units before one that leans back (up to two); the unit after one that leads on (a colon), or
    that goes on from it in the same paragraph or item."""
    needed = set(chosen)
    for number in chosen:
        found = index.unit_at(number)
        assert found is not None
        unit, passage = found
        n = number
        while unit.leans_back and number - n < 2:
            previous = index.unit_at(n - 1)
            if previous is None or previous[1].section != passage.section:
                break
            n -= 1
            needed.add(n)
            unit = previous[0]
        following = index.unit_at(number + 1)
        if (
            following is not None
            and following[1].section == passage.section
            and (found[0].leads_on or (following[0].leans_back and following[0].block == found[0].block))
        ):
            needed.add(number + 1)
    return sorted(needed)


def _render(units: Sequence[Unit]) -> str:
    """Units as Markdown: a block's sentences on one line, list items and table rows one per line."""
    text, previous, block_kind = "", None, ""
    for unit in units:
        piece = f"- {unit.text}" if unit.kind == "item" else unit.text
        if unit.kind == "row" and (previous is None or previous.block != unit.block):
            piece = f"{unit.table_header}\n{piece}"
        if previous is None:
            text = piece
        elif previous.block == unit.block and unit.kind == "sentence":
            text += " " + piece
        elif unit.kind in ("item", "row") and block_kind == unit.kind and unit.block - previous.block <= 1:
            text += "\n" + piece
        else:
            text += "\n\n" + piece
        if previous is None or previous.block != unit.block:
            block_kind = "paragraph" if unit.kind == "sentence" else unit.kind
        previous = unit
    return text


def excerpts(index: DocumentIndex, retrieval: Retrieval) -> list[Excerpt]:
    """The answer's blocks, in document order, each with its citation; none when nothing was retrieved."""
    if not retrieval.hits or not retrieval.units:
        return []
    groups: list[tuple[Passage, list[Unit]]] = []
    for number in _with_dependencies(index, _chosen(retrieval)):
        found = index.unit_at(number)
        assert found is not None
        unit, passage = found
        if groups and groups[-1][0].section == passage.section:
            groups[-1][1].append(unit)
        else:
            groups.append((passage, [unit]))
    return [Excerpt(_render(units), passage.section) for passage, units in groups]
