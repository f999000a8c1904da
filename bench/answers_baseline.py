"""The answer evaluation's baseline: the local provider as it was before hybrid retrieval.

Dense-only: documents cut at headings and blank lines into passages of about
700 characters, embedded with the same model, the three best by cosine of at
least 0.2, answered with those whole passages. Kept here, unchanged, so the
evaluation compares against it in the same run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lightspeed.answers.retrieval import Document
from lightspeed.models.embedding import Embedder

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
TOP_K, MIN_SCORE, PASSAGE_CHARS = 3, 0.2, 700
NO_ANSWER = "I could not find anything about that in the documentation I have."


@dataclass(frozen=True)
class OldPassage:
    text: str
    source: str
    heading: str  # the section heading the passage was cut from
    title: str


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


def split_document(text: str, source: str) -> list[OldPassage]:
    title = source
    passages: list[OldPassage] = []
    for heading, body in _sections(text):
        if heading and title == source:
            title = heading
        for chunk in _chunks(body, PASSAGE_CHARS):
            passages.append(OldPassage(f"{heading}\n\n{chunk}" if heading else chunk, source, heading, title))
    return passages


class DenseIndex:
    def __init__(self, embedder: Embedder, documents: Sequence[Document]) -> None:
        self.embedder = embedder
        self.passages = [p for d in documents for p in split_document(d.text, d.source)]
        self.vectors = embedder.encode([p.text for p in self.passages])

    def search(self, query: str) -> list[OldPassage]:
        scores = self.vectors @ self.embedder.encode([query])[0]
        best = np.argsort(-scores)[:TOP_K]
        return [self.passages[i] for i in best if scores[i] >= MIN_SCORE]

    @staticmethod
    def answer(passages: Sequence[OldPassage]) -> str:
        if not passages:
            return NO_ANSWER
        parts = ["Here is what the documentation says:"]
        parts += [f"{p.text}\n\n(Source: {p.title}, {p.source})" for p in passages]
        return "\n\n".join(parts)
