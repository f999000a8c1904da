"""`lightspeed-ingest export feedback`: the feedback browser's export from a terminal (issue 27).

It asks the running ingest (`GET /api/admin/v1/feedback?format=...`, the same filters), so the export is
the API's, streamed: nothing is held in memory, and a bar (or `progress` lines) shows the bytes as they
come. The address is `--url`, else the config's `ingest.host` and `ingest.port`; the admin key is
`LIGHTSPEED_INGEST_ADMIN_KEY`, else the config's (`admin_key`, `admin_key_file`, the systemd credential).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import BinaryIO

import aiohttp

from lightspeed_common.atomic import private_output
from lightspeed_common.config import AppConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.progress import Progress

EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 69


def base_url(config: AppConfig, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    ingest = config.ingest
    host = "127.0.0.1" if ingest.host in ("0.0.0.0", "::") else ingest.host  # noqa: S104 - a bind address
    scheme = "https" if ingest.tls_cert_file else "http"
    return f"{scheme}://{host}:{ingest.port}"


def export(config: AppConfig, args: argparse.Namespace) -> int:
    key = os.environ.get("LIGHTSPEED_INGEST_ADMIN_KEY") or read_secret(
        config.ingest.admin_key, config.ingest.admin_key_file, config.ingest.admin_key_credential
    )
    if not key:
        print("no admin key: set LIGHTSPEED_INGEST_ADMIN_KEY, or ingest.admin_key_file in the config", file=sys.stderr)
        return EXIT_REFUSED
    query = {name: getattr(args, name) for name in ("since", "until", "sentiment", "category", "q")}
    query = {name: value for name, value in query.items() if value is not None} | {"format": args.format}
    url = f"{base_url(config, args.url)}/api/admin/v1/feedback"
    try:
        if args.output is None:
            asyncio.run(_download(url, query, key, sys.stdout.buffer))
        else:
            with private_output(args.output) as sink:  # a refusal leaves no file
                asyncio.run(_download(url, query, key, sink))
        return 0
    except Refused:
        return EXIT_REFUSED
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"the ingest at {url} does not answer: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE


class Refused(Exception):
    """The ingest answered with an error (printed)."""


async def _download(url: str, query: dict[str, str], key: str, sink: BinaryIO) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, params=query, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        if response.status != 200:
            text = await response.text()
            print(f"the ingest refused ({response.status}): {text}", file=sys.stderr)
            raise Refused
        with Progress("exporting feedback", None, unit="B", scale=True) as progress:
            async for chunk in response.content.iter_chunked(1 << 16):
                sink.write(chunk)
                progress.advance(len(chunk))
