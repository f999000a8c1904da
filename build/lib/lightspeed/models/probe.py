"""Load a model and run a test inference, measuring what the spec's metadata asks for.

Everything here is blocking (run it on the model-loading thread). A failure
to load or to infer is an answer, not an exception: the result says which
step failed and why, and the metadata says `load_success`/`inference_success`.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from lightspeed.models.embedding import SentenceTransformerEmbedder, load_sentence_transformer
from lightspeed.models.sources import ModelUnavailable, ResolvedModel, path_hash, resolve
from lightspeed.telemetry.service import ModelFacts

log = structlog.get_logger(__name__)

TEST_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I restart a service after changing its configuration?",
)
NORM_TOLERANCE = 1e-3
METRICS = ("cosine", "dot", "euclidean", "manhattan")
MODALITIES = ("text", "image", "audio", "video")
_WEIGHT_ERRORS = ("safetensor", "header", "state_dict", "unpickl", "pytorch_model", "invalid load key", "deserializ")


@dataclass(frozen=True)
class ProbeResult:
    facts: ModelFacts
    embedder: SentenceTransformerEmbedder | None  # None when the model is unusable
    error_code: str | None = None
    error: str | None = None
    load_seconds: float = 0.0
    inference_seconds: float = 0.0


def failed_facts(name: str, source: str, local_path_hash: str | None, version: str | None = None) -> ModelFacts:
    return ModelFacts(
        model_name=name,
        model_source=source,
        model_version=version,
        embedding_dimension=None,
        modalities=[],
        distance_metric=None,
        normalization=None,
        load_success=False,
        inference_success=False,
        device_type="cpu",
        local_path_hash=local_path_hash,
    )


def unavailable(name: str, source: str, local_path: str | None, exc: ModelUnavailable) -> ProbeResult:
    """The result for a model that could not even be found."""
    digest = path_hash(local_path) if source == "local_path" and local_path else None
    return ProbeResult(failed_facts(name, source, digest), None, exc.code, exc.reason)


def _load_error(exc: BaseException, path: Path) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if isinstance(exc, pickle.UnpicklingError) or any(marker in lowered for marker in _WEIGHT_ERRORS):
        return "weights_unreadable", f"the weights in {path} cannot be read ({text[:300]})"
    return "load_failed", f"the model in {path} failed to load ({text[:300]})"


def probe(name: str, source: str, resolved: ResolvedModel) -> ProbeResult:
    """Load the model at `resolved.path`, encode the test sentences, and measure."""
    started = time.perf_counter()
    try:
        model = load_sentence_transformer(resolved.path)
        embedder = SentenceTransformerEmbedder(model, name)
    except Exception as exc:
        code, reason = _load_error(exc, resolved.path)
        log.warning("embedding_model_load_failed", model=name, code=code, error=type(exc).__name__)
        return ProbeResult(failed_facts(name, source, resolved.local_path_hash, resolved.version), None, code, reason)
    loaded = time.perf_counter()
    device = "gpu" if str(getattr(model, "device", "cpu")).split(":")[0] in ("cuda", "mps", "xpu") else "cpu"
    metric = str(getattr(model, "similarity_fn_name", None) or "cosine")
    modalities = [m for m in getattr(model, "modalities", ["text"]) if m in MODALITIES] or ["text"]
    base = ModelFacts(
        model_name=name,
        model_source=source,
        model_version=resolved.version,
        embedding_dimension=embedder.dimension,
        modalities=modalities,
        distance_metric=metric if metric in METRICS else None,
        normalization=None,
        load_success=True,
        inference_success=False,
        device_type=device,
        local_path_hash=resolved.local_path_hash,
    )
    try:
        raw = embedder.encode(TEST_SENTENCES, normalize=False)
        norms = np.linalg.norm(raw, axis=1)
        if raw.ndim != 2 or raw.shape[0] != len(TEST_SENTENCES) or not np.all(np.isfinite(raw)):
            raise ValueError(f"the test inference returned an unusable array of shape {raw.shape}")
    except Exception as exc:
        log.warning("embedding_model_inference_failed", model=name, error=type(exc).__name__)
        reason = f"the test inference failed ({type(exc).__name__}: {str(exc)[:300]})"
        return ProbeResult(base, None, "inference_failed", reason, loaded - started)
    done = time.perf_counter()
    facts = dataclasses.replace(
        base,
        embedding_dimension=int(raw.shape[1]),
        normalization="l2" if bool(np.all(np.abs(norms - 1.0) < NORM_TOLERANCE)) else "none",
        inference_success=True,
    )
    return ProbeResult(facts, embedder, None, None, loaded - started, done - loaded)


def find_and_probe(name: str, source: str, local_path: str | None, models_dir: Path) -> ProbeResult:
    """Resolve the model's files locally, then load and measure it; never raises for an unusable model."""
    try:
        resolved = resolve(name, source, local_path, models_dir)
    except ModelUnavailable as exc:
        return unavailable(name, source, local_path, exc)
    return probe(name, source, resolved)
