"""The state store's tables, the same for SQLite and PostgreSQL (each backend adds its telemetry queue)."""

from __future__ import annotations

CONVERSATION_TABLES = (
    """CREATE TABLE IF NOT EXISTS conversations (
        conversation_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_message_at TEXT,
        message_count INTEGER NOT NULL DEFAULT 0,
        topic_summary TEXT,
        last_used_model TEXT,
        last_used_provider TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (owner, last_message_at)",
    """CREATE TABLE IF NOT EXISTS turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        started_at TEXT NOT NULL,
        completed_at TEXT NOT NULL,
        attachments TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    )""",
)
SHARED_TABLES = (
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # DOUBLE PRECISION: seconds since the epoch need more digits than PostgreSQL's REAL (float4) keeps.
    "CREATE TABLE IF NOT EXISTS leases "
    "(name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
)

# The audit trail (lightspeed.privacy.audit): never erased with a user's data. Each backend adds its id column.
AUDIT_COLUMNS = (
    "at TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, requested_by TEXT NOT NULL, counts TEXT NOT NULL"
)
