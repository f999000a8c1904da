"""TelemetryService: consent, the client id, and building and queuing events.

The rules, in one place:
- Off unless the operator enabled it, with consent to the current field list
  (`CONSENT_VERSION`) and a configured registry. `DO_NOT_TRACK` (set to
  anything but empty or 0) forces it off, whatever is stored.
- The client id is made when telemetry is first enabled. Disabling keeps it
  (so re-enabling does not count an installation twice) but it is never sent
  while off. Only `lightspeed serve --reset-telemetry-client-id` changes it:
  a new id while enabled, none at all while disabled.
- Events are queued only while telemetry is effectively on; events dated
  before the current consent are never sent (the sender drops them).
- Disabling sends nothing (no opt-out ping) and leaves the queue for the
  operator to purge.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from lightspeed.store.settings import RuntimeSettings
from lightspeed.store.telemetry_queue import TelemetryQueue
from lightspeed_common.config import TelemetryConfig
from lightspeed_common.errors import Conflict
from lightspeed_common.telemetry_schema import (
    CONSENT_VERSION,
    EVENT_TYPE,
    NEVER_SENT,
    ModelRegistrationEvent,
    field_catalogue,
    utc_timestamp,
)

log = structlog.get_logger(__name__)
SECTION = "telemetry"
Clock = Callable[[], datetime]
DNT_REASON = "DO_NOT_TRACK is set in the server's environment"


def do_not_track(environ: Mapping[str, str]) -> bool:
    return environ.get("DO_NOT_TRACK", "").strip() not in ("", "0")


# The reason when nobody turned telemetry on (rather than DO_NOT_TRACK or a missing registry).
NOT_ENABLED = "not enabled"


@dataclass(frozen=True)
class ModelFacts:
    """What a model load and test inference measured: the event minus time and client id."""

    model_name: str
    model_source: str
    model_version: str | None
    embedding_dimension: int | None
    modalities: list[str]
    distance_metric: str | None
    normalization: str | None
    load_success: bool
    inference_success: bool
    device_type: str
    local_path_hash: str | None


class TelemetryService:
    def __init__(
        self,
        config: TelemetryConfig,
        settings: RuntimeSettings,
        queue: TelemetryQueue,
        environ: Mapping[str, str],
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.queue = queue
        self._settings = settings
        self._dnt = do_not_track(environ)
        self._clock = clock

    # -- state -----------------------------------------------------------------------------

    @property
    def stored_enabled(self) -> bool:
        return self._settings.section(SECTION).get("enabled") is True

    def is_effective(self) -> bool:
        """Events are queued and sent only when this is True."""
        return self.stored_enabled and not self._dnt and self.config.registry_url is not None

    @property
    def client_id(self) -> str | None:
        value = self._settings.section(SECTION).get("client_id")
        return value if isinstance(value, str) else None

    @property
    def consented_at(self) -> datetime | None:
        value = self._settings.section(SECTION).get("consented_at")
        return datetime.fromisoformat(value) if isinstance(value, str) and self.stored_enabled else None

    def disabled_reason(self) -> str | None:
        if self._dnt:
            return DNT_REASON
        if self.config.registry_url is None:
            return "telemetry.registry_url is not configured"
        if not self.stored_enabled:
            return NOT_ENABLED
        return None

    def should_ask(self) -> bool:
        """Nobody has said yes or no yet, and saying yes is possible: ask once, after a registration."""
        undecided = "enabled" not in self._settings.section(SECTION)
        return undecided and not self._dnt and self.config.registry_url is not None

    def status(self) -> dict[str, Any]:
        stored = self._settings.section(SECTION)
        return {
            "enabled": self.is_effective(),
            "stored_enabled": self.stored_enabled,
            # False until an operator has said yes or no once: the settings page asks after a registration.
            "decided": "enabled" in stored,
            "disabled_reason": self.disabled_reason(),
            "do_not_track": self._dnt,
            "client_id": self.client_id,
            "consent_version": stored.get("consent_version"),
            "current_consent_version": CONSENT_VERSION,
            "consented_at": stored.get("consented_at") if self.stored_enabled else None,
            "registry_url": str(self.config.registry_url) if self.config.registry_url else None,
            "queue": {
                **self.queue.counts(),
                "max_events": self.queue.bounds.max_events,
                "max_bytes": self.queue.bounds.max_bytes,
                "max_age_days": self.queue.bounds.max_age.days,
            },
        }

    def consent(self) -> dict[str, Any]:
        """Everything an operator agrees to by enabling: the consent dialog's content."""
        return {
            "version": CONSENT_VERSION,
            "event_type": EVENT_TYPE,
            "purpose": (
                "When you register an embedding model, send anonymized facts about the model (not about "
                "your data) to the model registry, so the project learns which models are used and work."
            ),
            "fields": field_catalogue(),
            "never_sent": list(NEVER_SENT),
            "registry_url": str(self.config.registry_url) if self.config.registry_url else None,
            "send_interval_seconds": self.config.send_interval_seconds,
            "do_not_track": self._dnt,
            "disabled_reason": DNT_REASON if self._dnt else None,
        }

    # -- changes ---------------------------------------------------------------------------

    async def enable(self, consent_version: str) -> dict[str, Any]:
        """Turn telemetry on; refused (409) under DO_NOT_TRACK, without a registry, or with stale consent."""
        if self._dnt:
            raise Conflict("Telemetry cannot be enabled", DNT_REASON)
        if self.config.registry_url is None:
            raise Conflict("Telemetry cannot be enabled", "telemetry.registry_url is not configured")
        if consent_version != CONSENT_VERSION:
            raise Conflict(
                "Consent is out of date",
                "The consent was given to a different field list; fetch GET /v1/telemetry/consent and review it",
            )
        stored = self._settings.section(SECTION)
        if stored.get("enabled") is True and stored.get("consent_version") == CONSENT_VERSION:
            return self.status()
        client_id = stored.get("client_id") or str(uuid.uuid4())
        await self._settings.update_section(
            SECTION,
            {
                **stored,
                "enabled": True,
                "consent_version": CONSENT_VERSION,
                # Second precision, like event timestamps: an event of this second counts as after.
                "consented_at": self._clock().replace(microsecond=0).isoformat(),
                "client_id": client_id,
            },
        )
        log.info("telemetry_enabled", consent_version=CONSENT_VERSION)
        return self.status()

    async def disable(self) -> dict[str, Any]:
        """Turn telemetry off. Nothing is sent about it; queued events stay until purged."""
        stored = self._settings.section(SECTION)
        if stored.get("enabled") is not False:  # also records a "no" to the first prompt
            await self._settings.update_section(SECTION, {**stored, "enabled": False, "consented_at": None})
            log.info("telemetry_disabled", queued=len(self.queue))
        return self.status()

    async def reset_client_id(self) -> None:
        """The start-up argument's effect: a new id while enabled, none while disabled."""
        stored = self._settings.section(SECTION)
        new_id = str(uuid.uuid4()) if self.stored_enabled else None
        await self._settings.update_section(SECTION, {**stored, "client_id": new_id})
        log.warning("telemetry_client_id_reset", had_id=stored.get("client_id") is not None, new_id=new_id is not None)

    async def purge(self) -> int:
        count = await self.queue.purge()
        log.info("telemetry_queue_purged", events=count)
        return count

    def record_model(self, facts: ModelFacts) -> bool:
        """Queue a model_registration event if telemetry is on; True when it was queued."""
        client_id = self.client_id
        if not self.is_effective() or client_id is None:
            return False
        try:
            event = ModelRegistrationEvent.model_validate(
                {
                    **dataclasses.asdict(facts),
                    "event_type": EVENT_TYPE,
                    "timestamp": utc_timestamp(self._clock()),
                    "client_id": client_id,
                }
            )
        except ValidationError as exc:
            # Validation before queuing: what is not in the schema never reaches the queue.
            log.error("telemetry_event_invalid", errors=[e["msg"] for e in exc.errors()])
            return False
        return self.queue.append(event)
