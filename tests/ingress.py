"""A real aiohttp ingress for the collector tests: records what it receives, answers as scripted."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from lightspeed_common.config import AppConfig

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Reply:
    status: int = 202
    body: str = '{"request_id": "ingress-assigned"}'
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False  # close the connection before answering, mid-request
    then: Callable[[], None] | None = None  # runs when this reply is served (e.g. rotate a token)


@dataclass
class Received:
    batch_id: str
    headers: dict[str, str]
    filename: str | None
    content_type: str | None
    members: dict[str, bytes]
    at: float


@dataclass
class Ingress:
    """Scripted replies are used in order; after them every upload gets `default`."""

    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    attempts: list[tuple[float, str]] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        batch_id = request.headers.get("x-rh-insights-request-id", "")
        self.attempts.append((time.monotonic(), batch_id))
        reply = self.script.pop(0) if self.script else self.default
        if reply.then is not None:
            reply.then()
        if reply.reset:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        received = await self._read(request, batch_id)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if 200 <= reply.status < 300:
            self.accepted.append(received)
            self._arrived.set()
        return web.Response(status=reply.status, text=reply.body, headers=dict(reply.headers))

    async def _read(self, request: web.Request, batch_id: str) -> Received:
        reader = await request.multipart()
        part = await reader.next()
        assert part is not None
        assert not isinstance(part, type(reader)), "nested multipart is not expected"
        data = await part.read()  # type: ignore[union-attr]
        members: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member)
                assert extracted is not None, member.name
                members[member.name] = extracted.read()
        return Received(
            batch_id,
            dict(request.headers),
            part.filename,  # type: ignore[union-attr]
            part.headers.get("Content-Type"),
            members,
            time.monotonic(),
        )

    def all_members(self) -> list[str]:
        return [name for received in self.accepted for name in received.members]

    async def wait_for_members(self, wanted: set[str]) -> None:
        """Until every wanted member was accepted (the caller bounds it with asyncio.timeout)."""
        while not wanted <= set(self.all_members()):
            self._arrived.clear()
            await self._arrived.wait()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post("/api/ingress/v1/upload", self.upload)
        return app


def write_record(root: Path, relpath: str, record: dict[str, Any]) -> Path:
    """A record as the server writes it (atomically)."""
    from lightspeed_common.atomic import ensure_dir, write_atomic

    path = root / relpath
    ensure_dir(path.parent)
    write_atomic(path, json.dumps(record).encode())
    return path


def config_file(config: AppConfig, tmp_path: Path) -> Path:
    data = config.model_dump(mode="json")
    token = config.user_data_collection.data_collector.ingress_server_auth_token
    data["user_data_collection"]["data_collector"]["ingress_server_auth_token"] = (
        token.get_secret_value() if token else None
    )
    path = tmp_path / "collector.yaml"
    path.write_text(json.dumps(data))
    return path


async def start_process(config: AppConfig, tmp_path: Path, *args: str, fault: str | None = None) -> Any:
    """`lightspeed-collector run ARGS` as a process; with `fault`, one that ends itself at that step."""
    command = ["tests.collector.crashing_collector", fault] if fault else ["collector", "run"]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *command,
        *args,
        "--config",
        str(config_file(config, tmp_path)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
