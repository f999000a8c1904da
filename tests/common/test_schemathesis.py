"""The published /openapi.json against the server as it runs: schemathesis generates requests from
the document, and every answer must be one the document lists, in the shape it lists (issue 23, item 20).

Each posture (noop, noop-with-token, api-key) gets a few hundred generated requests; a failure names
the operation and what differed. The hand-written scenarios in test_openapi_conformance.py stay: they
walk the states (a conversation, then its feedback) that random requests rarely reach.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from ingest.app import create_app as create_ingest_app
from lightspeed.api.app import create_app
from lightspeed.api.state import OPENAPI
from lightspeed.models.embedding import SentenceTransformerEmbedder
from lightspeed_common.config import config_from_mapping
from tests.conftest import base_mapping
from tests.ingest_support import ADMIN_KEY as ADMIN_KEY_FOR_TESTS
from tests.ingest_support import ingest_config
from tests.support import Background, deep_merge

ADMIN_KEY = "lsk_schemathesis-admin-key-0123456789abcdef"
# Generated cases per operation; about 35 operations, so a few hundred requests per posture. Derandomized:
# the same cases every run, so that a failure in CI is one a developer can run again.
CASES = 12

POSTURES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "noop": ({"module": "noop"}, {}),
    "noop-with-token": ({"module": "noop-with-token"}, {"Authorization": "Bearer any-token"}),
    "api-key": ({"module": "api-key"}, {"Authorization": f"Bearer {ADMIN_KEY}"}),
}


@pytest.fixture(scope="module", params=list(POSTURES))
def running(
    request: pytest.FixtureRequest, embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """The server in one posture on 127.0.0.1, its document, and the headers a client of it sends."""
    authentication, headers = POSTURES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    docs = root / "docs"
    docs.mkdir()
    (docs / "install.md").write_text("# Installing\n\nRun make install, then make run.\n")
    if authentication["module"] == "api-key":
        keys = root / "keys.yaml"
        keys.write_text(f"- {{key: {ADMIN_KEY}, user_id: operator, role: admin}}\n")
        authentication = {**authentication, "api_key": {"keys_file": str(keys)}}
    mapping = deep_merge(base_mapping(root, docs), {"authentication": authentication})
    app = create_app(config_from_mapping(mapping), embedder=embedder)
    background = Background()
    try:
        port = background.serve(app)
        yield f"http://127.0.0.1:{port}", app[OPENAPI], headers
    finally:
        background.close()


# Operations whose refusals no schema can foresee: whether a model loads is found by loading it, whether
# an archive is a tar.gz of records by reading it, whether a range's days are in order by comparing them.
DECIDED_BY_STATE = {
    "POST /v1/embedding-models",
    "POST /api/ingress/v1/upload",
    "GET /api/admin/v1/insights",
    "GET /api/admin/v1/insights/{chart}.svg",
}


def checked(operation: Any, base_url: str, headers: dict[str, str]) -> Any:
    """A hypothesis test sending `operation`'s generated cases and checking each answer against the document."""
    # An operation documented only as refused (DELETE /v1/embedding-models/active: 405) accepts nothing.
    refused_only = not any(status.startswith("2") for status in operation.definition.raw["responses"])
    excluded = [positive_data_acceptance] if refused_only or operation.label in DECIDED_BY_STATE else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=CASES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, timeout=60, excluded_checks=excluded)

    return check


def described(exc: BaseException) -> str:
    """An exception's kind and first lines, and those of what it groups: a one-line one (hypothesis's
    FlakyFailure) otherwise left only the operation's name to go on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: " + " | ".join(lines[:12])
    if isinstance(exc, BaseExceptionGroup):
        text += "".join(f" || {described(inner)}" for inner in exc.exceptions)
    return text


def failures_of(base_url: str, document: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """Every operation's generated cases sent and checked; what failed, one line each."""
    found: list[str] = []
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        operation = result.ok()
        try:
            checked(operation, base_url, headers)()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; the list is the verdict
            found.append(f"{operation.label}: " + described(exc))
    return found


def test_every_generated_request_gets_an_answer_the_document_describes(
    running: tuple[str, dict[str, Any], dict[str, str]],
) -> None:
    base_url, document, headers = running
    failures = failures_of(base_url, document, headers)
    print("\n".join(failures))  # the whole of each, where the assertion's diff would cut it
    assert failures == []


@pytest.fixture(scope="module")
def running_ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """lightspeed-ingest on 127.0.0.1, its /openapi.json, and a key that is both an upload token and the admin key."""
    state = tmp_path_factory.mktemp("ingest")
    # Wrong admin keys are throttled to a few a minute (tested in test_ingest_registry.py); schemathesis
    # sends many on purpose, and expects each to be a 401 or 403.
    config = ingest_config(state, uploads={"tokens": [ADMIN_KEY_FOR_TESTS]}, admin_wrong_keys_burst=100_000)
    background = Background()
    try:
        port = background.serve(create_ingest_app(config))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=30) as answer:
            document = json.load(answer)
        yield f"http://127.0.0.1:{port}", document, {"Authorization": f"Bearer {ADMIN_KEY_FOR_TESTS}"}
    finally:
        background.close()


def test_the_ingests_document_describes_every_answer_to_generated_requests(
    running_ingest: tuple[str, dict[str, Any], dict[str, str]],
) -> None:
    """The ingest has its own /openapi.json now, every route in it, and is held to it the same way."""
    base_url, document, headers = running_ingest
    assert len(document["paths"]) >= 11
    failures = failures_of(base_url, document, headers)
    print("\n".join(failures))
    assert failures == []
