-- The ingest database as the release before numbered SQLite migrations wrote it (schema version 1, sqlite3 .dump).
PRAGMA user_version=1;
BEGIN TRANSACTION;
CREATE TABLE contributions (
    model_id INTEGER NOT NULL REFERENCES models (id),
    contributor TEXT NOT NULL,
    day TEXT NOT NULL,
    events INTEGER NOT NULL,
    load_failures INTEGER NOT NULL,
    inference_failures INTEGER NOT NULL,
    last_event_at TEXT NOT NULL,
    PRIMARY KEY (model_id, contributor, day)
) WITHOUT ROWID;
CREATE TABLE deletions (
    id INTEGER PRIMARY KEY,
    requested_at TEXT NOT NULL,
    via TEXT NOT NULL,
    contributions INTEGER NOT NULL,
    events INTEGER NOT NULL
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    model_key TEXT NOT NULL UNIQUE,
    model_name TEXT NOT NULL,
    model_source TEXT NOT NULL,
    embedding_dimension INTEGER,
    distance_metric TEXT,
    normalization TEXT,
    modalities TEXT NOT NULL,
    device_type TEXT NOT NULL
);
CREATE TABLE records (
    content_sha256 TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES uploads (request_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    record_timestamp TEXT
) WITHOUT ROWID;
CREATE TABLE seen_events (
    event_key TEXT PRIMARY KEY,
    contributor TEXT NOT NULL,
    day TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE uploads (
    request_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    service TEXT NOT NULL,
    category TEXT NOT NULL,
    archive TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    new_records INTEGER NOT NULL,
    duplicate_records INTEGER NOT NULL
);
CREATE INDEX uploads_received ON uploads (received_at);
CREATE INDEX records_request ON records (request_id);
CREATE INDEX records_conversation ON records (conversation_id);
CREATE INDEX contributions_contributor ON contributions (contributor);
CREATE INDEX contributions_day ON contributions (day);
CREATE INDEX seen_events_contributor ON seen_events (contributor);
CREATE INDEX seen_events_day ON seen_events (day);
COMMIT;
