"""One entry of the audit trail: who asked for what about whose data, when, and how much it touched.
Never any content; the subject and the requester are keyed user hashes (or `retention`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditEvent:
    at: str  # ISO 8601, UTC
    action: str  # erasure, export, retention
    subject: str  # whose data: a keyed user hash
    requested_by: str  # a keyed user hash, `start-up` (an interrupted erasure finished), or `retention`
    counts: dict[str, int]
