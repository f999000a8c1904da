"""Documents cut along their Markdown structure: sections, blocks, passages and sentences.

A section is the text under one heading; its heading path (`collector.md › How a
record travels`) is the citation of everything in it. A section's body is a
sequence of blocks: paragraphs, list items, fenced code and tables. Passages
pack whole blocks of one section up to about `max_chars` (a paragraph longer
than that is cut between sentences; code and tables are never cut), so a
passage never starts mid-sentence. Units are what an answer is made of: the
sentences of paragraphs and list items, a table's rows, a whole code block.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# Bumped whenever the cutting changes, so cached vectors of the old cut are not reused.
CHUNKING_VERSION = 2
PATH_SEPARATOR = " › "

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
# A sentence ends at . ! or ? followed by white space and something that can begin a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9`\"'(\[*_])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "no.", "see.")
# First words by which a sentence leans on the one before it ("It is retried...", "Pass it back...").
_LEANS_BACK = re.compile(
    r"^(it|its|this|that|these|those|they|them|their|then|otherwise|however|so|therefore|thus|"
    r"such|both|all|also|instead|here|there|the same|either|neither|afterwards|meanwhile)\b"
    r"|^\W*\w+\W+(\w+\W+)?(it|its|this|these|those|they|them)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Unit:
    """One sentence, table row or code block: the smallest piece an answer quotes."""

    text: str  # as it reads alone (for scoring)
    kind: str  # "sentence", "item" (a list item's first sentence), "row", "code"
    block: int  # the block's number within its document
    leans_back: bool  # needs the unit before it to be understood
    leads_on: bool  # introduces what follows (ends with a colon)
    table_header: str = ""  # a row's table header, shown above it


@dataclass(frozen=True)
class Passage:
    text: str  # the heading and the passage's blocks, as Markdown
    source: str  # path relative to the documents folder
    title: str  # the document's first heading, or its file name
    section: str  # the heading path: `source › heading › subheading`
    units: tuple[Unit, ...] = field(default=(), compare=False)


@dataclass
class _Block:
    kind: str  # "paragraph", "item", "code" (fenced), "indented" (code), "table"
    lines: list[str]
    number: int = 0

    def markdown(self) -> str:
        if self.kind == "paragraph":
            return " ".join(line.strip() for line in self.lines)
        if self.kind == "item":
            match = _ITEM.match(self.lines[0])
            head = match.group(2) if match else "-"
            rest = [match.group(3) if match else self.lines[0], *(line.strip() for line in self.lines[1:])]
            indent = match.group(1) if match else ""
            return f"{indent}{head} {' '.join(rest)}"
        return "\n".join(self.lines)


def split_sentences(text: str) -> list[str]:
    """`text` cut into sentences; abbreviations (`e.g.`), file names and versions do not end one."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()].rstrip()
        if candidate.lower().endswith(_ABBREVIATIONS):
            continue
        pieces.append(candidate)
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _sections(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(level, heading, body lines) of each section; headings inside code fences are not headings."""
    level, heading, lines = 0, "", list[str]()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            yield level, heading, lines
            level, heading, lines = len(match.group(1)), match.group(2).strip(), []
        else:
            lines.append(line)
    yield level, heading, lines


def _indented(blocks: list[_Block], current: _Block | None, line: str) -> _Block | None:
    """Where an indented line goes: an indented code block (new, or going on after a blank line),
    a list item's indented paragraph; None when it is no code (a paragraph's lazy continuation)."""
    if current is None and blocks and blocks[-1].kind in ("indented", "item"):
        current = blocks[-1]
        current.lines += ["", line.rstrip()] if current.kind == "indented" else [line]
        return current
    if current is None:
        current = _Block("indented", [])
        blocks.append(current)
    elif current.kind != "indented":
        return None
    current.lines.append(line.rstrip())
    return current


def _blocks(lines: Sequence[str]) -> list[_Block]:
    blocks: list[_Block] = []
    current: _Block | None = None
    fence: str | None = None
    for line in lines:
        if fence is not None:
            assert current is not None
            current.lines.append(line)
            if line.strip().startswith(fence):
                fence, current = None, None
        elif fence_match := _FENCE.match(line):
            fence, current = fence_match.group(1), _Block("code", [line])
            blocks.append(current)
        elif not line.strip():
            current = None
        elif line.startswith("    ") and (indented := _indented(blocks, current, line)) is not None:
            current = indented
        elif line.lstrip().startswith("|"):
            if current is None or current.kind != "table":
                current = _Block("table", [])
                blocks.append(current)
            current.lines.append(line.strip())
        elif _ITEM.match(line):
            current = _Block("item", [line])
            blocks.append(current)
        elif current is not None and current.kind in ("paragraph", "item"):
            current.lines.append(line)
        else:
            current = _Block("paragraph", [line])
            blocks.append(current)
    return blocks


def _units(block: _Block) -> list[Unit]:
    n = block.number
    if block.kind in ("code", "indented"):
        return [Unit(block.markdown(), "code", n, leans_back=True, leads_on=False)]
    if block.kind == "table":
        rows = [r for r in block.lines if not _TABLE_RULE.match(r)]
        header = "\n".join(block.lines[:2]) if len(block.lines) > 1 and _TABLE_RULE.match(block.lines[1]) else ""
        body = rows[1:] if header else rows
        return [Unit(row, "row", n, leans_back=False, leads_on=False, table_header=header) for row in body]
    text = block.markdown().strip()
    if block.kind == "item":
        text = text.split(" ", 1)[1] if " " in text else text
    units = []
    for i, sentence in enumerate(split_sentences(text)):
        kind = "item" if block.kind == "item" and i == 0 else "sentence"
        leans = bool(_LEANS_BACK.match(sentence)) or (i > 0 and sentence[:1].islower())
        units.append(Unit(sentence, kind, n, leans_back=leans, leads_on=sentence.endswith(":")))
    return units


def _pack(blocks: Sequence[_Block], max_chars: int) -> Iterator[list[_Block]]:
    """Whole blocks, in order, in groups of about `max_chars`; a long paragraph is cut between sentences."""
    group: list[_Block] = []
    size = 0
    for block in blocks:
        pieces = [block]
        if block.kind == "paragraph" and len(block.markdown()) > max_chars:
            pieces = [_Block("paragraph", [s], block.number) for s in split_sentences(block.markdown())]
        for piece in pieces:
            length = len(piece.markdown()) + 2
            if group and size + length > max_chars:
                yield group
                group, size = [], 0
            group.append(piece)
            size += length
    if group:
        yield group


def _render(blocks: Sequence[_Block]) -> str:
    """Blocks as Markdown: list items one per line, other blocks apart by a blank line."""
    text, previous = "", ""
    for block in _distinct(blocks):
        joiner = "\n" if previous == block.kind == "item" else "\n\n"
        text = f"{text}{joiner}{block.markdown()}" if text else block.markdown()
        previous = block.kind
    return text


def split_document(text: str, source: str, max_chars: int) -> list[Passage]:
    """Every passage of one document, in document order."""
    title = source
    headings: dict[int, str] = {}
    passages: list[Passage] = []
    number = 0
    for level, heading, lines in _sections(text):
        if level:
            headings = {lvl: h for lvl, h in headings.items() if lvl < level}
            headings[level] = heading
            if level == 1 and title == source:
                title = heading
        blocks = _blocks(lines)
        for block in blocks:
            block.number, number = number, number + 1
        if not blocks:
            continue
        below_title = [h for lvl, h in sorted(headings.items()) if lvl > 1] or list(headings.values())
        section = PATH_SEPARATOR.join([source, *below_title])
        for group in _pack(blocks, max_chars):
            body = _render(group)
            units = tuple(u for b in _distinct(group) for u in _units(b))
            passages.append(Passage(f"{heading}\n\n{body}" if heading else body, source, title, section, units))
    return [Passage(p.text, p.source, title, p.section, p.units) for p in passages]


def _distinct(group: Sequence[_Block]) -> list[_Block]:
    """The blocks of a group, a cut paragraph's sentences joined again into their one block's piece."""
    out: list[_Block] = []
    for block in group:
        if out and block.kind == "paragraph" and out[-1].kind == "paragraph" and out[-1].number == block.number:
            out[-1] = _Block("paragraph", [out[-1].markdown(), block.markdown()], block.number)
        else:
            out.append(block)
    return out
