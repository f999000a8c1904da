"""A real PostgreSQL server for the tests: initdb and pg_ctl from the Debian package, in a temporary
directory, on a free loopback port, as the unprivileged `postgres` user when the tests run as root
(PostgreSQL refuses root). Password authentication (scram-sha-256), so the password-file path is real.

One server per test session (`postgres_server`); each test gets its own database (`pg_database`).
The server can be stopped and started again under a running daemon (`stop`, `start`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fake_llm import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "test-only-postgres-password"


class PostgresServer:
    """`parent`: where its directory goes (a temporary one by default); `durable`: fsync on (benchmarks),
    off for the tests, whose databases are thrown away."""

    def __init__(self, parent: Path | None = None, durable: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lightspeed-pg-", dir=parent))
        self.durable = durable
        self.data = self.root / "data"
        self.password_file = self.root / "password"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        pwfile = self.root / "initdb-password"
        pwfile.write_text(PASSWORD, encoding="utf-8")
        if self._user:
            os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(
            BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        pwfile.unlink()
        self.start()

    def _run(self, *args: Any) -> None:
        result = subprocess.run(
            [str(a) for a in args], user=self._user, cwd=self.root, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
        if not self.durable:
            options += " -c fsync=off"
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` is a crash: no checkpoint, connections cut)."""
        self._run(BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), password=PASSWORD, autocommit=True)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return name

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class PgDatabase:
    """One test's database on the session's server."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def section(self, **overrides: Any) -> dict[str, Any]:
        """A `database` config section for it, the password from a file."""
        return {"url": self.url, "password_file": str(self.server.password_file), **overrides}

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.server.connect(self.name) as conn:
            return conn.execute(sql.encode(), args).fetchall()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> PgDatabase:
    """A fresh database; the server is started again first if a test left it stopped."""
    try:
        postgres_server.connect().close()
    except psycopg.OperationalError:
        postgres_server.start()
    return PgDatabase(postgres_server, postgres_server.create_database())
