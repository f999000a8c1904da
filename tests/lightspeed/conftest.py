"""Fixtures only the API server's tests use (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry import Registry


@pytest.fixture
async def registry(aiohttp_server: Any) -> Registry:
    """A real model registry on 127.0.0.1 that records what it receives and answers as scripted."""
    fake = Registry()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.url = str(server.make_url("/api/v1/telemetry"))
    return fake
