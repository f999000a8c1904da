"""Helpers for the lightspeed-ingest tests: configs, crafted archives, uploads."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient

from lightspeed_common.config import AppConfig, config_from_mapping
from tests.support import deep_merge

Client = TestClient[web.Request, web.Application]
IngestFactory = Callable[..., Awaitable[Client]]
TOKEN = "collector-token"
ADMIN_KEY = "admin-key-for-tests"
ARCHIVE_TYPE = "application/vnd.redhat.lightspeed.periodic+tar"


def ingest_config(state_dir: Path, **overrides: Any) -> AppConfig:
    base = {
        "ingest": {
            "state_dir": str(state_dir),
            "admin_key": ADMIN_KEY,
            "uploads": {"tokens": [TOKEN]},
        },
        "logging": {"format": "json"},
    }
    return config_from_mapping(deep_merge(base, {"ingest": overrides}))


def everything_stored(state_dir: Path, database: dict[str, Any], only: set[str] | None = None) -> bytes:
    """Every byte the ingest's database holds: the SQLite files, or every row of every PostgreSQL table
    (`only` these, when the database is shared with the server)."""
    if not database:
        return b"".join(p.read_bytes() for p in state_dir.glob("ingest.sqlite3*"))
    password = Path(database["password_file"]).read_text(encoding="utf-8").strip()
    with psycopg.connect(database["url"], password=password) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        tables = [table for table in tables if only is None or table in only]
        dumps = []
        for table in tables:
            sql = f'SELECT array_agg(t::text) FROM "{table}" t'  # noqa: S608 - names from pg_tables
            dumps.append(str(conn.execute(sql.encode()).fetchone()))
        return "\n".join(dumps).encode()


def feedback_record(conversation: str, text: str = "thanks") -> bytes:
    return json.dumps(
        {
            "user_id": "hashed-user",
            "timestamp": "2026-11-22T10:00:00Z",
            "conversation_id": conversation,
            "user_question": "q",
            "llm_response": "r",
            "sentiment": 1,
            "user_feedback": text,
            "categories": None,
        }
    ).encode()


def transcript_record(conversation: str) -> bytes:
    return json.dumps(
        {
            "metadata": {"conversation_id": conversation, "timestamp": "2026-11-22T10:00:01Z", "user_id": "hashed"},
            "redacted_query": "q",
            "llm_response": "r",
        }
    ).encode()


def member(name: str, data: bytes = b"{}", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    info.mode = 0o644
    return info


def tar_gz(entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), compresslevel=6)


def records_archive(conversation: str = "c-1", feedback_text: str = "thanks") -> bytes:
    """What the collector sends: one feedback and one transcript record."""
    feedback = feedback_record(conversation, feedback_text)
    transcript = transcript_record(conversation)
    return tar_gz(
        [
            (member("feedback/f1.json", feedback), feedback),
            (member(f"transcripts/user/{conversation}/t1.json", transcript), transcript),
        ]
    )


async def upload(
    client: Client,
    archive: bytes,
    request_id: str | None = "batch-1",
    *,
    token: str | None = TOKEN,
    content_type: str = ARCHIVE_TYPE,
    part: str = "file",
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field(part, archive, filename="batch.tar.gz", content_type=content_type)
    form.add_field("metadata", json.dumps({"source": "tests"}), content_type="application/json")
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if request_id is not None:
        headers["x-rh-insights-request-id"] = request_id
    return await client.post("/api/ingress/v1/upload", data=form, headers=headers)


def admin_headers(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def admin_get(client: Client, path: str) -> dict[str, Any]:
    resp = await client.get(path, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def stored_archives(state_dir: Path) -> list[Path]:
    return sorted(p for p in (state_dir / "archives").rglob("*") if p.is_file())
