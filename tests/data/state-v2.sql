-- The state store as release 0.x before numbered SQLite migrations wrote it (schema version 2, sqlite3 .dump): the upgrade test opens it.
PRAGMA user_version=2;
BEGIN TRANSACTION;
CREATE TABLE conversations (
        conversation_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_message_at TEXT,
        message_count INTEGER NOT NULL DEFAULT 0,
        topic_summary TEXT,
        last_used_model TEXT,
        last_used_provider TEXT
    );
INSERT INTO "conversations" VALUES('0b7c8f5e-1111-4d6a-9a43-7d7c2d8b6f01','ownerhash','2026-01-01T00:00:00+00:00','2026-01-01T00:00:01+00:00',1,'q?','m','local');
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "settings" VALUES('feedback_enabled','false');
CREATE TABLE telemetry_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
INSERT INTO "telemetry_queue" VALUES(1,'{"x": 1}');
CREATE TABLE turns (
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
    );
INSERT INTO "turns" VALUES('0b7c8f5e-1111-4d6a-9a43-7d7c2d8b6f01',1,'q?','a.','m','local','2026-01-01T00:00:00+00:00','2026-01-01T00:00:01+00:00','[]');
CREATE INDEX conversations_owner ON conversations (owner, last_message_at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('telemetry_queue',1);
COMMIT;
