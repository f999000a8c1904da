"""What every `lightspeed` command over the running server's API shares: the client, the server's
address, the confirmation prompt, the output helpers, and one exit code per kind of failure
(0 done, 1 the server refused (its reason is printed), 2 a confirmation is needed and there is
no terminal, 69 the server cannot be reached, 78 a bad config file). The API key comes from
`--api-key-file` or `LIGHTSPEED_API_KEY` and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import aiohttp

from lightspeed_common.config import load_config
from lightspeed_common.errors import EXIT_CONFIG, ConfigError
from lightspeed_common.progress import Progress

EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 69
EXIT_USAGE = 2  # a confirmation is needed and there is no terminal: add --yes


class ApiRefused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(_reason(status, body))


def _reason(status: int, body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    if isinstance(detail, dict):
        return f"{detail.get('response')}: {detail.get('cause')}"
    return f"HTTP {status}"


class Api:
    """A tiny synchronous client over aiohttp, one request at a time."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, seconds: float = 120) -> Any:
        return asyncio.run(self.request(method, path, body, seconds))

    async def request(self, method: str, path: str, body: dict[str, Any] | None, seconds: float) -> Any:
        client_timeout = aiohttp.ClientTimeout(total=seconds)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.request(method, self._base + path, json=body, headers=self._headers) as response,
        ):
            text = await response.text()
            data = json.loads(text) if text else {}
            if response.status >= 400:
                raise ApiRefused(response.status, data)
            return data

    def download(self, path: str, sink: BinaryIO, seconds: float = 600, progress: Progress | None = None) -> int:
        """GET `path` into `sink` as it arrives (a large answer never sits in memory); the bytes written,
        counted on `progress` as they come."""
        return asyncio.run(self._download(path, sink, seconds, progress))

    async def _download(self, path: str, sink: BinaryIO, seconds: float, progress: Progress | None) -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(self._base + path, headers=self._headers) as response,
        ):
            if response.status >= 400:
                text = await response.text()
                raise ApiRefused(response.status, json.loads(text) if text else {})
            written = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                sink.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress.advance(len(chunk))
            return written


def base_url(args: argparse.Namespace, default_config: Path) -> str:
    """--url; else the address in --config; else in the default config file if there is one; else the
    default address (a development install has no /etc/lightspeed/lightspeed.yaml)."""
    if args.url:
        return str(args.url)
    if args.config is None and not default_config.exists():
        return DEFAULT_URL
    service = load_config(args.config or default_config).service
    host = "127.0.0.1" if service.host in ("0.0.0.0", "") else service.host  # noqa: S104 - mapping, not binding
    host = "[::1]" if host == "::" else host
    return f"http://{host}:{service.port}"


DEFAULT_URL = "http://127.0.0.1:8080"


class NoTerminal(Exception):
    """A question needs an answer and nobody can give one (a script, a pipe, CI)."""


def ask_terminal(question: str) -> str:
    """The answer typed at the terminal; NoTerminal when stdin is not one, "" (no) at end of input."""
    if not sys.stdin.isatty():
        raise NoTerminal
    try:
        return input(question)
    except EOFError:
        return ""


def table(rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    cells = [["-" if v is None else ", ".join(v) if isinstance(v, list) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip(), file=out)


def dump(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2), file=out)


Command = Callable[[Api, argparse.Namespace, TextIO, Callable[[str], str]], int]


def run_command(  # noqa: PLR0911 - one exit code per kind of failure, each with its own line
    args: argparse.Namespace,
    default_config: Path,
    commands: Mapping[tuple[str, str], Command],
    out: TextIO = sys.stdout,
    ask: Callable[[str], str] = ask_terminal,
) -> int:
    try:
        key = args.api_key_file.read_text(encoding="utf-8").strip() if args.api_key_file else None
        api = Api(base_url(args, default_config), key or os.environ.get("LIGHTSPEED_API_KEY"))
        command = commands[(args.command, args.action)]
        return command(api, args, out, ask)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration: {'; '.join(exc.problems)}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        if isinstance(exc, aiohttp.ClientConnectionError):
            print(f"cannot reach the lightspeed server: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the lightspeed server: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ApiRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except NoTerminal:
        print(
            f"`lightspeed {' '.join(filter(None, (args.command, args.action)))}` asks for confirmation and there is "
            "no terminal to ask: "
            "run it with --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_USAGE
