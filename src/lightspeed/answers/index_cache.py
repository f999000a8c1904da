"""The answer index on disk, so a restart does not embed the documents again.

Layout under `<state_dir>/answer-index/`:
- `<model key>/<document key>.npz`: one document's passage and unit vectors. The
  document key hashes its path, its text and how it was cut; the model key, the
  model's name and its output for a fixed probe text (another model, or other
  weights under the same name, gets its own folder). A changed document gets a
  new key, so only it is embedded again; files no document uses any more are
  removed when the index is built.
- `lexical-<corpus key>/`: the BM25 index (bm25s's numpy files) of one set of
  documents. BM25's weights depend on every document, so any change makes a
  new one; building it takes milliseconds, loading it about one.

Every file is written to a temporary name and renamed, so a crash never leaves
a torn file; an unreadable one is rebuilt. Workers starting together with a
cold cache embed one at a time (a flock on `<model key>/.building`): the
first embeds, the others wait and then load what it stored.
A cache that cannot be written is logged and the index kept in memory only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import structlog

from lightspeed.answers.chunking import CHUNKING_VERSION
from lightspeed.answers.lexical import TERMS_VERSION, LexicalIndex
from lightspeed.models.embedding import Embedder, Vectors
from lightspeed_common.progress import Progress

log = structlog.get_logger(__name__)
CACHE_DIR = "answer-index"
FORMAT = 2  # bumped whenever what a document's file holds changes
_PROBE = "How does the collector ship records to the ingress?"


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:32]


def model_key(embedder: Embedder) -> str:
    """The model's name and what it makes of a probe text: other weights, another key (blocking)."""
    probe = np.round(embedder.encode([_PROBE])[0], 3)
    return digest(embedder.name, str(embedder.dimension), probe.astype(np.float32).tobytes())


def document_key(source: str, text: str, max_chars: int) -> str:
    return digest(f"format {FORMAT} chunking {CHUNKING_VERSION} max_chars {max_chars}", source, text)


class IndexCache:
    def __init__(self, root: Path | None, progress_every: float = 5.0) -> None:
        self.root = root  # None: remember nothing
        self.progress_every = progress_every  # seconds between `progress` events while documents are embedded

    def vectors(
        self,
        model: str,
        keys: Sequence[str],
        rows: Sequence[tuple[int, int]],
        embed: Callable[[int], tuple[Vectors, Vectors]],
        done: Callable[[int], None] = lambda i: None,
    ) -> list[tuple[Vectors, Vectors]]:
        """Each document's two arrays of vectors, of `rows[i]` rows each: from the cache, else
        `embed(i)` and stored. `done(i)` is called once document i's vectors are at hand."""
        folder = self.root / model if self.root else None
        found: list[tuple[Vectors, Vectors] | None] = [None] * len(keys)
        self._fill(found, folder, keys, rows, done)
        if any(cached is None for cached in found):
            with self._building(folder):
                self._fill(found, folder, keys, rows, done)  # what another worker stored while this one waited
                self._embed(found, folder, keys, embed, done)
        out = [cached for cached in found if cached is not None]
        if folder is not None:
            self._prune(folder, {f"{k}.npz" for k in keys})
        return out

    def _fill(
        self,
        found: list[tuple[Vectors, Vectors] | None],
        folder: Path | None,
        keys: Sequence[str],
        rows: Sequence[tuple[int, int]],
        done: Callable[[int], None],
    ) -> None:
        """The documents not found yet, from the cache where it has them (of the right size)."""
        if folder is None:
            return
        for i, key in enumerate(keys):
            if found[i] is None:
                cached = self._load(folder / f"{key}.npz")
                if cached is not None and (len(cached[0]), len(cached[1])) == rows[i]:
                    found[i] = cached
                    done(i)

    def _embed(
        self,
        found: list[tuple[Vectors, Vectors] | None],
        folder: Path | None,
        keys: Sequence[str],
        embed: Callable[[int], tuple[Vectors, Vectors]],
        done: Callable[[int], None],
    ) -> None:
        """The documents still missing, embedded and stored (the first start, or documents changed)."""
        missing = [i for i, cached in enumerate(found) if cached is None]
        if not missing:
            return
        with Progress("indexing documents", len(missing), unit="documents", every=self.progress_every) as bar:
            for i in missing:
                made = found[i] = embed(i)
                if folder is not None:
                    self._store(folder, f"{keys[i]}.npz", made)
                done(i)
                bar.advance()

    @contextlib.contextmanager
    def _building(self, folder: Path | None) -> Iterator[None]:
        """One process at a time embeds into a model's folder: workers starting together with a cold cache
        wait for the first (an exclusive flock on `.building`, let go when its holder ends, however it
        ends), then load what it stored, instead of each embedding every document on a share of the cores."""
        if folder is None:
            yield
            return
        try:
            fd = os.open(self._folder(folder) / ".building", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("answer_index_not_cached", path=str(folder), error=str(exc))
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("answer_index_waiting", reason="another process is embedding the same documents")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def lexical(self, keys: Sequence[str], build: Callable[[], LexicalIndex], size: int) -> LexicalIndex:
        """The BM25 index of these documents: loaded, else built and stored."""
        if self.root is None:
            return build()
        name = f"lexical-{digest(f'terms {TERMS_VERSION}', *keys)}"
        directory = self.root / name
        if directory.is_dir():
            try:
                return LexicalIndex.load(directory, size)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("answer_index_unreadable", path=str(directory), error=str(exc))
        index = build()
        try:
            staging = Path(tempfile.mkdtemp(prefix=".lexical-", dir=self._folder(self.root)))
            index.save(staging)
            shutil.rmtree(directory, ignore_errors=True)
            staging.rename(directory)
        except OSError as exc:
            log.warning("answer_index_not_cached", path=str(directory), error=str(exc))
        self._prune(self.root, {name}, prefix="lexical-")
        return index

    @staticmethod
    def _folder(path: Path) -> Path:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @staticmethod
    def _load(path: Path) -> tuple[Vectors, Vectors] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["passages"], data["units"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("answer_index_unreadable", path=str(path), error=str(exc))
            return None

    def _store(self, folder: Path, name: str, vectors: tuple[Vectors, Vectors]) -> None:
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=self._folder(folder))
            with os.fdopen(fd, "wb") as out:
                np.savez(out, passages=vectors[0], units=vectors[1])
            Path(temp).replace(folder / name)
        except OSError as exc:
            log.warning("answer_index_not_cached", path=str(folder / name), error=str(exc))

    @staticmethod
    def _prune(folder: Path, keep: set[str], prefix: str = "") -> None:
        """Remove what no document uses any more (another worker's temporary files are left alone)."""
        try:
            entries = list(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(prefix) and not entry.name.startswith(".") and entry.name not in keep:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
