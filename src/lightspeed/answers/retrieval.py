"""Hybrid retrieval over a folder of Markdown and text documents.

Two rankings of the passages, fused by reciprocal rank (each passage scores
the sum of 1 / (60 + its rank) in each): BM25 over their terms, which finds
an exact config key, path or status code, and the embedding model's cosine
similarity, which finds a question asked in other words. Every sentence of
the documents is embedded too, so an answer can be made of the sentences
closest to the question (answers/extract.py) with one embedding per query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightspeed.answers.chunking import PATH_SEPARATOR, Passage, Unit, split_document
from lightspeed.answers.index_cache import IndexCache, document_key, model_key
from lightspeed.answers.lexical import LexicalIndex, Vocabulary, coverage, terms, weighted_terms, words
from lightspeed.models.embedding import Embedder, Vectors

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
RRF_K = 60  # the usual constant of reciprocal rank fusion: ranks beyond the first few differ little
CONTEXT_WEIGHT = 0.5  # how much an earlier question counts beside the follow-up's own words
CANDIDATES = 8  # fused passages whose relevance is measured
# Weights of the four rankings in the fusion: BM25 1, the passages' and their best sentences' cosine
# 0.7 each, the headings' 0.25 (a heading named after a config key says little to the model).
LEXICAL_WEIGHT, DENSE_WEIGHT, HEADING_WEIGHT = 1.0, 0.7, 0.25
UNIT_WEIGHT = 0.7  # a sentence's score: this much its own relevance, the rest its passage's


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the documents folder
    text: str


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # the passage's relevance to the question, 0 to 1


@dataclass(frozen=True)
class Query:
    text: str
    context: str = ""  # the earlier question a follow-up refers back to


@dataclass(frozen=True)
class ScoredUnit:
    unit: Unit
    passage: Passage
    number: int  # the unit's place in the whole corpus: document order
    score: float


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]  # best first; empty when nothing is relevant enough
    units: list[ScoredUnit]  # the candidate passages' units, best first
    relevance: float


def read_documents(folder: Path) -> list[Document]:
    """Every document below `folder` (blocking), in a stable order."""
    documents: list[Document] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in DOCUMENT_SUFFIXES and path.is_file() and not path.is_symlink():
            text = path.read_text(encoding="utf-8", errors="replace")
            documents.append(Document(path.relative_to(folder).as_posix(), text))
    return documents


def _unit_text(unit: Unit) -> str:
    return f"{unit.table_header.splitlines()[0]}\n{unit.text}" if unit.table_header else unit.text


def _headings(passage: Passage) -> str:
    """The document's title and the passage's headings below it: `Running lightspeed › Exit codes`."""
    below = passage.section.split(PATH_SEPARATOR)[1:]
    return PATH_SEPARATOR.join([passage.title, *(h for h in below if h != passage.title)])


def _normalised(vector: Vectors) -> Vectors:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def embedded_texts(passages: Sequence[Passage]) -> list[str]:
    """What the index embeds of a document's passages: their texts, then their headings, then their units."""
    # A code block says little in words: it is embedded under its headings.
    units = [f"{_headings(p)}\n{u.text}" if u.kind == "code" else _unit_text(u) for p in passages for u in p.units]
    return [p.text for p in passages] + [_headings(p) for p in passages] + units


class DocumentIndex:
    """Passages, their sentences, and both rankings; `search` is blocking (it embeds the query)."""

    def __init__(
        self,
        embedder: Embedder,
        documents: Sequence[Document],
        max_chars: int,
        cache: IndexCache,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> None:
        """`progress(passages done, passages)` is called as documents are embedded (or found in the cache)."""
        self.embedder = embedder
        self.documents = tuple(documents)
        self.max_chars = max_chars
        self.cache = cache
        cut = [split_document(d.text, d.source, max_chars) for d in documents]
        keys = [document_key(d.source, d.text, max_chars) for d in documents]
        self.passages = tuple(p for doc in cut for p in doc)
        self._units = [(u, p) for p in self.passages for u in p.units]
        self._unit_passage = np.array([i for i, p in enumerate(self.passages) for _ in p.units], dtype=np.int64)
        # A passage is found by its section's headings as well as its text: the headings count twice.
        passage_terms = [terms(f"{_headings(p)}\n{p.text}") for p in self.passages]
        self._passage_terms = [set(t) for t in passage_terms]
        # A sentence is about its section too: its headings' terms count for it, at half weight.
        self._heading_terms = {id(p): frozenset(terms(_headings(p))) for p in self.passages}
        self._unit_terms = [set(terms(_unit_text(u))) for u, _ in self._units]
        self.vocabulary = Vocabulary(passage_terms, (w for p in self.passages for w in words(p.text)))
        self._lexical = cache.lexical(keys, lambda: LexicalIndex.build(passage_terms), len(self.passages))
        dimension = embedder.dimension
        if documents:
            rows = [(2 * len(doc), sum(len(p.units) for p in doc)) for doc in cut]
            counted = [0]

            def done(i: int) -> None:
                counted[0] += len(cut[i])
                progress(counted[0], len(self.passages))

            progress(0, len(self.passages))
            stored = cache.vectors(model_key(embedder), keys, rows, lambda i: self._embed(cut[i]), done)
            passage_vectors = [s[0].reshape(2, -1, dimension) for s in stored]
            self._passage_vectors = np.concatenate([v[0] for v in passage_vectors])
            self._heading_vectors = np.concatenate([v[1] for v in passage_vectors])
            self._unit_vectors = np.concatenate([s[1] for s in stored]).reshape(-1, dimension)
        else:
            self._passage_vectors = self._heading_vectors = self._unit_vectors = np.zeros((0, dimension), np.float32)

    def _embed(self, passages: Sequence[Passage]) -> tuple[Vectors, Vectors]:
        """A document's passages and their headings, then its units."""
        vectors = self.embedder.encode(embedded_texts(passages))
        return vectors[: 2 * len(passages)], vectors[2 * len(passages) :]

    def with_embedder(self, embedder: Embedder) -> DocumentIndex:
        """The same documents indexed with another model (blocking)."""
        return DocumentIndex(embedder, self.documents, self.max_chars, self.cache)

    def search(self, query: Query, top_k: int, min_score: float) -> Retrieval:
        if not self.passages:
            return Retrieval([], [], 0.0)
        text, context = self.vocabulary.repair(query.text), self.vocabulary.repair(query.context)
        vectors = self.embedder.encode([text, context] if context else [text])
        query_vector = _normalised(vectors[0] + CONTEXT_WEIGHT * vectors[1] if context else vectors[0])
        wanted = weighted_terms([(text, 1.0), (context, CONTEXT_WEIGHT)])
        dense = self._passage_vectors @ query_vector
        sentences = np.full(len(self.passages), -1.0, dtype=np.float32)
        np.maximum.at(sentences, self._unit_passage, self._unit_vectors @ query_vector)
        headings = self._heading_vectors @ query_vector
        fused = _fuse(
            (dense, DENSE_WEIGHT),
            (sentences, DENSE_WEIGHT),
            (headings, HEADING_WEIGHT),
            (self._lexical.scores(wanted), LEXICAL_WEIGHT),
        )
        candidates = [int(i) for i in np.argsort(-fused, kind="stable")[:CANDIDATES]]
        # A passage is as close to the question as itself or its best sentence.
        relevance = {
            i: self._relevance(max(float(dense[i]), float(sentences[i])), wanted, self._passage_terms[i])
            for i in candidates
        }
        best = max(relevance.values())
        if best < min_score:
            return Retrieval([], [], best)
        # Fusion picks the candidates (each ranking has its say); relevance orders them (the best answer first).
        chosen = sorted(candidates[:top_k], key=lambda i: -relevance[i])
        hits = [Hit(self.passages[i], round(relevance[i], 4)) for i in chosen]
        return Retrieval(hits, self._score_units(query_vector, wanted, hits), best)

    def _relevance(
        self, similarity: float, wanted: dict[str, float], present: set[str], nearby: frozenset[str] = frozenset()
    ) -> float:
        """How well a passage or sentence answers: its cosine and the share of the question's weighted terms it has."""
        return 0.5 * similarity + 0.5 * coverage(wanted, present, self.vocabulary, nearby)

    def _score_units(self, query_vector: Vectors, wanted: dict[str, float], hits: list[Hit]) -> list[ScoredUnit]:
        """The hits' units, best first: each scored by its own relevance and its passage's."""
        passage_score = {id(h.passage): h.score for h in hits}
        numbers = [n for n, (_, p) in enumerate(self._units) if id(p) in passage_score]
        if not numbers:
            return []
        similarity = self._unit_vectors[numbers] @ query_vector
        scored = []
        for n, cosine in zip(numbers, similarity, strict=True):
            unit, passage = self._units[n]
            own = self._relevance(float(cosine), wanted, self._unit_terms[n], self._heading_terms[id(passage)])
            scored.append(
                ScoredUnit(unit, passage, n, UNIT_WEIGHT * own + (1 - UNIT_WEIGHT) * passage_score[id(passage)])
            )
        return sorted(scored, key=lambda s: -s.score)

    def unit_at(self, number: int) -> tuple[Unit, Passage] | None:
        return self._units[number] if 0 <= number < len(self._units) else None


def _fuse(*rankings: tuple[np.ndarray, float]) -> np.ndarray:
    """Weighted reciprocal rank fusion; a passage a ranking gives no score (BM25 without a shared
    term) gets nothing from it."""
    fused = np.zeros(len(rankings[0][0]), dtype=np.float64)
    for scores, weight in rankings:
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(order), dtype=np.float64)
        ranks[order] = np.arange(1, len(order) + 1)
        fused += np.where(scores > 0, weight / (RRF_K + ranks), 0.0)
    return fused
