"""The audit trail: every erasure and export (and, to come, retention pass) writes one event to the
store's append-only `audit` table and one journal entry with its own MESSAGE_ID, so
`journalctl MESSAGE_ID=<AUDIT_MESSAGE_ID>` lists them too. An erasure never removes them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import structlog

from lightspeed.store.audit import AuditEvent
from lightspeed.store.queries import StateStore

log = structlog.get_logger("lightspeed.audit")

# sd-id128: a fixed id for journalctl MESSAGE_ID= (made once with `systemd-id128 new`).
AUDIT_MESSAGE_ID = "5f1c0b9e7d2a4c3b8e6f1a2d3c4b5a69"


async def audit(store: StateStore, action: str, subject: str, requested_by: str, counts: dict[str, int]) -> None:
    event = AuditEvent(datetime.now(UTC).isoformat(), action, subject, requested_by, counts)
    await store.add_audit(event)
    log.info("audit_event", message_id=AUDIT_MESSAGE_ID, **asdict(event))
