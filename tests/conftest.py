"""Shared fixtures: a config built for tmp_path, the real packaged embedding model, a client."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ingest.app import create_app as create_ingest_app
from ingest.postgres_storage import PostgresStorage
from ingest.sqlite_storage import SQLiteStorage
from ingest.storage import Storage
from lightspeed.answers.index_cache import IndexCache
from lightspeed.answers.providers.base import AnswerProvider
from lightspeed.answers.retrieval import DocumentIndex, read_documents
from lightspeed.api.app import create_app
from lightspeed.models.embedding import SentenceTransformerEmbedder, load_embedder
from lightspeed_common.config import AppConfig, config_from_mapping
from lightspeed_common.config_base import DatabaseConfig
from tests.fake_llm import llm  # noqa: F401 - a fixture, shared by the tests that talk to an OpenAI server
from tests.ingest_support import IngestFactory, ingest_config
from tests.postgres import PASSWORD, PgDatabase, pg_database, postgres_server  # noqa: F401 - fixtures
from tests.support import deep_merge
from tests.tls_support import connect_proxy, private_ca  # noqa: F401 - fixtures: outbound TLS and proxy tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]

DOCS = {
    "install.md": (
        "# Installing lightspeed\n\n"
        "Run make install to create the virtual environment in .venv.\n\n"
        "## Starting the server\n\n"
        "Run make run to start the API server on 127.0.0.1:8080 with the development config.\n"
    ),
    "feedback.md": (
        "# Feedback\n\n"
        "POST /v1/feedback stores one JSON file per feedback in feedback_storage.\n\n"
        "## Turning feedback off\n\n"
        "An admin can PUT /v1/feedback/status to disable storing feedback.\n"
    ),
    "kubernetes.txt": "Pods are scheduled onto nodes by the kube-scheduler.\n",
}


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2 from its package, loaded once per session.

    One torch thread per test process: `make test` runs two processes on two cores, and a process
    embedding a whole index with two threads starved the other's event loop (a /liveness timing
    test saw 115 ms while tests/lightspeed/test_answers_docs.py built the docs/ index next to it)."""
    import torch

    torch.set_num_threads(1)
    return load_embedder(None)


@pytest.fixture(scope="session")
def docs_index(embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An answer-index cache of this repository's docs/, as a server answering from docs/ with the default
    passage size leaves it under its state directory; built once per run, shared by the xdist workers.

    Embedding docs/ (about 1,150 texts) takes 30 s on a quiet machine and minutes on a loaded one; the
    tests that serve docs/ copy this instead of each embedding it again. Read-only: copy it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, the same for every worker
    folder = shared / "docs-answer-index"
    fd = os.open(shared / "docs-answer-index.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one worker embeds; another asking meanwhile waits for it
        complete = shared / "docs-answer-index.complete"
        if not complete.exists():
            passage_chars = config_from_mapping({}).answers.local.passage_chars
            DocumentIndex(embedder, read_documents(REPO / "docs"), passage_chars, IndexCache(folder))
            complete.touch()
    finally:
        os.close(fd)
    return folder


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def base_mapping(tmp_path: Path, docs_dir: Path) -> dict[str, Any]:
    return {
        "service": {"state_dir": str(tmp_path / "state"), "port": 8080},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(tmp_path / "data" / "feedback"),
            "transcripts_enabled": True,
            "transcripts_storage": str(tmp_path / "data" / "transcripts"),
        },
        "answers": {"provider": "local", "local": {"documents_dir": str(docs_dir)}},
    }


ConfigFactory = Callable[..., AppConfig]


@pytest.fixture
def make_config(tmp_path: Path, docs_dir: Path) -> ConfigFactory:
    """Build an AppConfig rooted in tmp_path; keyword sections are merged over the defaults."""

    def build(**sections: Any) -> AppConfig:
        return config_from_mapping(deep_merge(base_mapping(tmp_path, docs_dir), sections))

    return build


@pytest.fixture
def config(make_config: ConfigFactory) -> AppConfig:
    return make_config()


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_client(aiohttp_client: Any, embedder: SentenceTransformerEmbedder) -> ClientFactory:
    async def build(
        config: AppConfig, provider: AnswerProvider | None = None
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(config, embedder=embedder, provider=provider)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return build


StartupFailure = Callable[[AppConfig], Awaitable[BaseException]]


@pytest.fixture
def startup_failure(embedder: SentenceTransformerEmbedder) -> StartupFailure:
    """Start an app that must fail to start; return the exception it failed with."""

    async def start(config: AppConfig) -> BaseException:
        runner = web.AppRunner(create_app(config, embedder=embedder))
        try:
            await runner.setup()
        except Exception as exc:
            return exc
        finally:
            await runner.cleanup()
        raise AssertionError("the app started")

    return start


@pytest.fixture
async def client(
    make_client: ClientFactory, config: AppConfig
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    return await make_client(config)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount small tmpfs file systems (root only, as on CI); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def ingest_database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ingest's `database` section: the embedded SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.section()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The ingest's storage itself, on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return SQLiteStorage(tmp_path / "ingest.sqlite3")
    database: PgDatabase = request.getfixturevalue("pg_database")
    return PostgresStorage(DatabaseConfig(url=database.url), PASSWORD)


@pytest.fixture
def make_ingest(aiohttp_client: Any, tmp_path: Path, ingest_database: dict[str, Any]) -> IngestFactory:
    """lightspeed-ingest through pytest-aiohttp, its state in tmp_path/ingest unless given; run once on
    SQLite and once on PostgreSQL (every ingest of one test shares the test's database)."""

    async def build(state_dir: Path | None = None, **overrides: Any) -> TestClient[web.Request, web.Application]:
        overrides.setdefault("database", ingest_database)
        config = ingest_config(state_dir or tmp_path / "ingest", **overrides)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(create_ingest_app(config))
        return client

    return build


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    """Debian's headless Chromium through playwright (never `playwright install`)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()
