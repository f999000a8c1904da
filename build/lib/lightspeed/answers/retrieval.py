"""Retrieval over a folder of Markdown and text documents.

Documents are split into passages at headings and blank lines, embedded once
at start-up, and searched by cosine similarity (the vectors are normalised,
so a dot product).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.models.embedding import Embedder, Vectors

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # path relative to the documents folder
    title: str  # the document's first heading, or its file name


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float


def split_document(text: str, source: str, max_chars: int) -> list[Passage]:
    """Cut one document into passages no longer than about `max_chars`.

    A passage never spans two sections; each carries the section heading so it
    reads on its own.
    """
    title = source
    passages: list[Passage] = []
    for heading, body in _sections(text):
        if heading and title == source:
            title = heading
        for chunk in _chunks(body, max_chars):
            passage_text = f"{heading}\n\n{chunk}" if heading else chunk
            passages.append(Passage(passage_text, source, title))
    return [Passage(p.text, p.source, title) for p in passages]


def _sections(text: str) -> Iterator[tuple[str, str]]:
    heading, lines = "", list[str]()
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            yield heading, "\n".join(lines)
            heading, lines = match.group(2).strip(), []
        else:
            lines.append(line)
    yield heading, "\n".join(lines)


def _chunks(body: str, max_chars: int) -> Iterator[str]:
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", body)):
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > max_chars:
            yield current
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
        while len(current) > max_chars * 2:
            yield current[:max_chars]
            current = current[max_chars:]
    if current:
        yield current


def read_documents(folder: Path, max_chars: int) -> list[Passage]:
    """Every passage of every document below `folder` (blocking), in a stable order."""
    passages: list[Passage] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in DOCUMENT_SUFFIXES and path.is_file() and not path.is_symlink():
            text = path.read_text(encoding="utf-8", errors="replace")
            passages.extend(split_document(text, path.relative_to(folder).as_posix(), max_chars))
    return passages


class PassageIndex:
    """Passages and their vectors; `search` is blocking (it embeds the query)."""

    def __init__(self, embedder: Embedder, passages: Sequence[Passage], vectors: Vectors) -> None:
        self.embedder = embedder
        self.passages = tuple(passages)
        self._vectors = vectors

    @classmethod
    def build(cls, embedder: Embedder, passages: Sequence[Passage]) -> PassageIndex:
        if passages:
            vectors = embedder.encode([p.text for p in passages])
        else:
            vectors = np.zeros((0, embedder.dimension), dtype=np.float32)
        return cls(embedder, passages, vectors)

    def search(self, query: str, top_k: int, min_score: float) -> list[Hit]:
        if not self.passages:
            return []
        query_vector = self.embedder.encode([query])[0]
        scores = self._vectors @ query_vector
        count = min(top_k, len(self.passages))
        best = np.argpartition(-scores, count - 1)[:count]
        ranked = sorted(best, key=lambda i: -scores[i])
        return [Hit(self.passages[i], float(scores[i])) for i in ranked if scores[i] >= min_score]
