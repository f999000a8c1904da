"""Registered embedding models, the active one, and switching between them.

The catalog (`embedding_models.json` in the state directory, written
atomically) keeps every registration, failed ones included, and the active
model's name. Loads run one at a time on a dedicated thread, so the event
loop keeps serving. Activation rebuilds the retrieval index with the new
model in the background and swaps it in one assignment when it is complete;
until then queries use the old index.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from lightspeed.models.embedding import Embedder
from lightspeed.models.probe import find_and_probe
from lightspeed.models.sources import ModelUnavailable
from lightspeed.telemetry.service import ModelFacts, TelemetryService
from lightspeed_common.atomic import write_private
from lightspeed_common.errors import Conflict, NotFound

log = structlog.get_logger(__name__)
CATALOG_FILE = "embedding_models.json"
T = TypeVar("T")
Index = TypeVar("Index")


@dataclass(frozen=True)
class RegisteredModel:
    facts: ModelFacts
    local_path: str | None
    registered_at: str
    error_code: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.facts.model_name

    @property
    def ready(self) -> bool:
        return self.error_code is None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.facts),
            "local_path": self.local_path,
            "status": "ready" if self.ready else "failed",
            "error": {"code": self.error_code, "reason": self.error} if self.error_code else None,
            "registered_at": self.registered_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegisteredModel:
        error = data.get("error") or {}
        facts = ModelFacts(**{k: data[k] for k in ModelFacts.__dataclass_fields__})
        return cls(facts, data.get("local_path"), data["registered_at"], error.get("code"), error.get("reason"))


class ModelCatalog:
    """The persisted registrations; file I/O on a thread, changes under one lock."""

    def __init__(self, path: Path, models: dict[str, RegisteredModel], active: str | None) -> None:
        self._path = path
        self.models = models
        self.active = active
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, state_dir: Path) -> ModelCatalog:
        """Read the catalog (blocking). Raises ValueError for a file that is not a catalog."""
        path = state_dir / CATALOG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, {}, None)
        try:
            models = {m["model_name"]: RegisteredModel.from_json(m) for m in data["models"]}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not an embedding model catalog: {exc}") from None
        return cls(path, models, data.get("active"))

    async def save(self, models: dict[str, RegisteredModel], active: str | None) -> None:
        payload = {"active": active, "models": [m.to_json() for m in models.values()]}
        async with self._lock:
            data = json.dumps(payload, indent=2).encode("utf-8")
            await asyncio.to_thread(write_private, self._path, data)
            self.models, self.active = models, active


@dataclass
class Activation:
    model_name: str
    state: str  # building, done, failed
    started_at: str
    finished_at: str | None = None
    error: str | None = None


class Retrieval(Protocol[Index]):
    """What activating a model changes: retrieval's index (`answers.Answerer` is one). A protocol, so
    the models package does not import the answers package, which imports it."""

    @property
    def embedder(self) -> Embedder: ...

    def index_with(self, embedder: Embedder) -> Index:
        """The documents indexed again with `embedder` (blocking)."""

    def use(self, index: Index) -> int:
        """Search `index` from now on (one assignment: a query sees the old or the new); its passages."""


class ModelManager:
    """Register, list and activate embedding models for a running server."""

    def __init__(
        self,
        catalog: ModelCatalog,
        retrieval: Retrieval[Any],
        telemetry: TelemetryService,
        *,
        models_dir: Path,
        default_name: str,
        load_default: Callable[[], Embedder],
    ) -> None:
        self.catalog = catalog
        self._retrieval = retrieval
        self._telemetry = telemetry
        self._models_dir = models_dir
        self._default_name = default_name
        self._load_default = load_default
        # One loader thread: two registrations never hold two extra models in memory at once.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._load_lock = asyncio.Lock()
        self.activation: Activation | None = None
        self._activation_task: asyncio.Task[None] | None = None

    @property
    def active_name(self) -> str:
        return self._retrieval.embedder.name

    async def _on_loader(self, func: Callable[[], T]) -> T:
        async with self._load_lock:
            return await asyncio.get_running_loop().run_in_executor(self._loader, func)

    async def register(self, name: str, source: str, local_path: str | None, activate: bool) -> dict[str, Any]:
        """Load, test, store and (if asked and usable) activate a model; report what happened."""
        result = await self._on_loader(lambda: find_and_probe(name, source, local_path, self._models_dir))
        entry = RegisteredModel(
            result.facts, local_path, datetime.now(UTC).isoformat(), result.error_code, result.error
        )
        await self.catalog.save({**self.catalog.models, name: entry}, self.catalog.active)
        queued = self._telemetry.record_model(result.facts)
        if queued:
            await self._telemetry.queue.flush()  # "queued" in the answer means on disk
        (log.info if entry.ready else log.warning)(
            "embedding_model_registered",
            model=name,
            source=source,
            status="ready" if entry.ready else "failed",
            error_code=entry.error_code,
            load_seconds=round(result.load_seconds, 3),
            telemetry_queued=queued,
        )
        activation = None
        if activate and result.embedder is not None:
            activation = self._start_activation(name, result.embedder)
        return {
            "model": {**entry.to_json(), "active": name == self.active_name},
            "telemetry": {
                "queued": queued,
                "reason": None if queued else self._telemetry.disabled_reason(),
                "ask": self._telemetry.should_ask(),
            },
            "activation": asdict(activation) if activation else None,
        }

    def listing(self) -> dict[str, Any]:
        active = self.active_name
        models = [{**m.to_json(), "active": m.name == active} for m in self.catalog.models.values()]
        if self._default_name not in self.catalog.models:
            embedder = self._retrieval.embedder if active == self._default_name else None
            models.insert(0, self._default_entry(embedder, active == self._default_name))
        return {
            "active": active,
            "default": self._default_name,
            "activation": asdict(self.activation) if self.activation else None,
            "models": models,
        }

    def _default_entry(self, embedder: Embedder | None, active: bool) -> dict[str, Any]:
        return {
            "model_name": self._default_name,
            "model_source": "default",
            "embedding_dimension": embedder.dimension if embedder else None,
            "status": "ready",
            "builtin": True,
            "active": active,
        }

    async def activate(self, name: str) -> Activation:
        """Start switching to `name` (409 while another switch runs, 404/409 for unknown or failed models)."""
        if name != self._default_name or name in self.catalog.models:
            entry = self.catalog.models.get(name)
            if entry is None:
                raise NotFound("Model not found", f"No embedding model named '{name}' is registered")
            if not entry.ready:
                raise Conflict("Model cannot be activated", f"'{name}' failed its registration: {entry.error}")
        return self._start_activation(name, None)

    def _start_activation(self, name: str, embedder: Embedder | None) -> Activation:
        if self._activation_task is not None and not self._activation_task.done():
            assert self.activation is not None
            raise Conflict("An activation is in progress", f"'{self.activation.model_name}' is being activated")
        self.activation = Activation(name, "building", datetime.now(UTC).isoformat())
        self._activation_task = asyncio.create_task(self._activate(self.activation, embedder))
        return self.activation

    async def _activate(self, activation: Activation, embedder: Embedder | None) -> None:
        name = activation.model_name
        try:
            model = embedder if embedder is not None else await self._on_loader(lambda: self._load(name))
            index = await self._on_loader(lambda: self._retrieval.index_with(model))
            passages = self._retrieval.use(index)
            await self.catalog.save(self.catalog.models, None if name == self._default_name else name)
        except Exception as exc:
            activation.state, activation.error = "failed", str(exc)
            log.exception("embedding_model_activation_failed", model=name)
        else:
            activation.state = "done"
            log.info("embedding_model_activated", model=name, passages=passages)
        activation.finished_at = datetime.now(UTC).isoformat()

    def _load(self, name: str) -> Embedder:
        """A registered model (or the default) loaded again (blocking). Raises ModelUnavailable."""
        entry = self.catalog.models.get(name)
        if entry is None:
            return self._load_default()
        result = find_and_probe(name, entry.facts.model_source, entry.local_path, self._models_dir)
        if result.embedder is None:
            raise ModelUnavailable(result.error_code or "load_failed", result.error or "the model did not load")
        return result.embedder

    async def delete(self, name: str) -> None:
        if name not in self.catalog.models:
            raise NotFound("Model not found", f"No embedding model named '{name}' is registered")
        activating = self.activation is not None and self.activation.state == "building"
        if name == self.active_name or (activating and self.activation and self.activation.model_name == name):
            raise Conflict("Model is in use", f"'{name}' is active or being activated; activate another first")
        models = {k: v for k, v in self.catalog.models.items() if k != name}
        await self.catalog.save(models, self.catalog.active)

    async def close(self) -> None:
        if self._activation_task is not None and not self._activation_task.done():
            self._activation_task.cancel()
        self._loader.shutdown(wait=False, cancel_futures=True)


def startup_embedder(catalog: ModelCatalog, models_dir: Path, load_default: Callable[[], Embedder]) -> Embedder:
    """The persisted active model, or the default if there is none or it no longer loads (blocking)."""
    entry = catalog.models.get(catalog.active) if catalog.active else None
    if entry is None:
        return load_default()
    result = find_and_probe(entry.name, entry.facts.model_source, entry.local_path, models_dir)
    if result.embedder is None:
        log.error("embedding_model_active_unavailable", model=entry.name, reason=result.error, fallback="default")
        return load_default()
    return result.embedder
