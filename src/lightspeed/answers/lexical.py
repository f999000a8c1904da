"""The lexical side of retrieval: terms, BM25 over passages (bm25s), term weights, typo repair.

bm25s rather than rank-bm25: it computes every document's BM25 contribution
of every term once, at indexing, into a sparse matrix, so a query is a sum of
a few matrix rows (rank-bm25 loops over the corpus in Python on every query);
it saves and loads that matrix as plain numpy files (no pickle), which is
what the on-disk index cache needs; and it is maintained (rank-bm25's last
release was 2022). Terms are made here, not by bm25s's tokenizer, so a config
key or a path counts whole as well as by its words: `feedback_enabled` is the
terms `feedback_enabled`, `feedback` and `enabl`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

# Unknown words one question may have repaired (each compared with every corpus word of a similar
# length): past it the rest are kept as typed, so a long question cannot hold a core for minutes.
MAX_REPAIRS_PER_QUESTION = 16
# Repairs remembered, per index: a word asked about again costs a dictionary look-up.
MAX_REMEMBERED_REPAIRS = 65536

# Bumped whenever terms are made differently, so a cached lexical index of the old terms is not reused.
TERMS_VERSION = 2

_COMPOUND = re.compile(r"[\w][\w.\-/:]*[\w]|\w")
_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        "a an and are as at be but by can could did do does doing for from had has have how i if in into is it its "
        "me my no not of on or our should so such than that the their them then there these they this those to "
        "us was we were what when where which who whom why will with would you your"
    ).split()
)
_stemmer = Stemmer.Stemmer("english")
# Forms the stemmer leaves apart ("sent" and "send"), and the short names users type for what
# the documents spell out: each counts as the other.
_SAME = {
    "sent": "send",
    "kept": "keep",
    "made": "make",
    "ran": "run",
    "written": "write",
    "wrote": "write",
    "built": "build",
    "found": "find",
    "given": "give",
    "gave": "give",
    "taken": "take",
    "took": "take",
    "chosen": "choose",
    "chose": "choose",
    "held": "hold",
    "began": "begin",
    "begun": "begin",
    "left": "leave",
    "lost": "lose",
    "paid": "pay",
    "shown": "show",
    "told": "tell",
    "brought": "bring",
    "thrown": "throw",
    "postgres": "postgresql",
    "pg": "postgresql",
    "env": "environment",
    "var": "variable",
    "vars": "variable",
    "config": "configuration",
    "conf": "configuration",
    "regex": "regular",
    "regexp": "regular",
    "k8s": "kubernetes",
    "doc": "documentation",
    "docs": "documentation",
    "cpu": "core",
    "cpus": "core",
    "storage": "store",
    "dir": "directory",
    "dirs": "directory",
    "folder": "directory",
    "auth": "authentication",
    "repo": "repository",
    "db": "database",
    "ssl": "tls",
    "cert": "certificate",
    "certs": "certificate",
}


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_stemmer.stemWord(_SAME.get(word, word)))


def words(text: str) -> list[str]:
    """The lower-case words of `text` that carry meaning (no stop words), unstemmed."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def terms(text: str) -> list[str]:
    """What `text` is indexed and searched by: stemmed words, and compounds (`feedback_enabled`,
    `retry-after`, `spool/outbox`) also whole, unstemmed."""
    out: list[str] = []
    for compound in _COMPOUND.findall(text.lower()):
        parts = [w for w in _WORD.findall(compound) if w not in STOPWORDS]
        if len(parts) > 1 or (parts and parts[0] != compound):
            out.append(compound)
        out.extend(_stem(w) for w in parts)
    return out


class Vocabulary:
    """The corpus's words and its terms' inverse document frequencies, for weights and typo repair."""

    def __init__(self, documents: Sequence[Sequence[str]], surface_words: Iterable[str]) -> None:
        counts: Counter[str] = Counter()
        for document in documents:
            counts.update(set(document))
        total = max(len(documents), 1)
        self.idf = {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in counts.items()}
        # A term the corpus does not have weighs like the rarest: its absence says the most.
        self.unknown_weight = math.log(1 + (total + 0.5) / 0.5)
        self._by_length: dict[int, list[str]] = {}
        for word in set(surface_words):
            if len(word) >= 4 and not word.isdigit():
                self._by_length.setdefault(len(word), []).append(word)
        self._known = set(surface_words)
        self._repairs: dict[str, str] = {}

    def weight(self, term: str) -> float:
        return self.idf.get(term, self.unknown_weight)

    def repair(self, text: str) -> str:
        """`text` with each word the corpus does not have replaced by the corpus word it most
        likely misspells (`colector` -> `collector`); words too far from any are kept, and so are
        the unknown words past the first MAX_REPAIRS_PER_QUESTION not repaired before."""
        budget = [MAX_REPAIRS_PER_QUESTION]

        def closest(match: re.Match[str]) -> str:
            word = match.group(0)
            lower = word.lower()
            if lower in self._known or lower in STOPWORDS or _stem(lower) in self.idf:
                return word
            repaired = self._repairs.get(lower)
            if repaired is None:
                if budget[0] <= 0:
                    return word
                budget[0] -= 1
                repaired = self._remember(lower, self._closest(lower))
            return word if repaired == lower else repaired

        return re.sub(r"[A-Za-z]{4,}", closest, text)

    def _closest(self, lower: str) -> str:
        candidates = [w for n in range(len(lower) - 2, len(lower) + 3) for w in self._by_length.get(n, ())]
        best = difflib.get_close_matches(lower, candidates, n=1, cutoff=0.8)
        return best[0] if best else lower

    def _remember(self, word: str, repaired: str) -> str:
        if len(self._repairs) >= MAX_REMEMBERED_REPAIRS:
            self._repairs.clear()
        self._repairs[word] = repaired
        return repaired


def weighted_terms(parts: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Terms of each text at that text's weight (a follow-up's own words count more than the
    earlier question's); a term in several keeps its highest weight."""
    weights: dict[str, float] = {}
    for text, weight in parts:
        for term in terms(text):
            weights[term] = max(weights.get(term, 0.0), weight)
    return weights


def coverage(
    query: Mapping[str, float], present: set[str], vocabulary: Vocabulary, nearby: frozenset[str] = frozenset()
) -> float:
    """The share of the query's term weight (IDF times the query's own weight) found in `present`;
    a term only `nearby` (a sentence's headings) counts half."""
    total = matched = 0.0
    for term, weight in query.items():
        w = weight * vocabulary.weight(term)
        total += w
        if term in present:
            matched += w
        elif term in nearby:
            matched += w / 2
    return matched / total if total else 0.0


class LexicalIndex:
    """BM25 over the passages' terms; `scores` is one score per passage."""

    def __init__(self, retriever: bm25s.BM25, size: int) -> None:
        self._retriever = retriever
        self._vocab: Mapping[str, int] = retriever.vocab_dict
        self.size = size

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]]) -> LexicalIndex:
        retriever = bm25s.BM25(method="lucene")
        if documents:
            retriever.index([list(d) or [""] for d in documents], show_progress=False)
        return cls(retriever, len(documents))

    def save(self, directory: Path) -> None:
        self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, size: int) -> LexicalIndex:
        return cls(bm25s.BM25.load(str(directory), show_progress=False, verbosity=0), size)

    def scores(self, query: Mapping[str, float]) -> np.ndarray:
        total = np.zeros(self.size, dtype=np.float32)
        if not self.size:
            return total
        by_weight: dict[float, list[str]] = {}
        for term, weight in query.items():
            if term in self._vocab:
                by_weight.setdefault(weight, []).append(term)
        for weight, group in by_weight.items():
            total += weight * self._retriever.get_scores(group)
        return total
