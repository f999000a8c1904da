-- The state store at schema version 1 (conversations and turns only; sqlite3 .dump): the upgrade test opens it.
PRAGMA user_version=1;
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
COMMIT;
