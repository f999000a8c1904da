"""The collector tests' ingress (tests/ingress.py, on 127.0.0.1) and their config, rooted in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lightspeed_common.config import AppConfig, config_from_mapping
from tests.ingress import Ingress
from tests.support import deep_merge

TOKEN = "ingress-token-0123456789"


@pytest.fixture
async def ingress(aiohttp_server: Any) -> Ingress:
    fake = Ingress()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.url = f"http://127.0.0.1:{server.port}/api/ingress/v1/upload"
    return fake


CollectorConfig = Callable[..., AppConfig]


@pytest.fixture
def make_config(tmp_path: Path, ingress: Ingress) -> CollectorConfig:
    def build(**sections: Any) -> AppConfig:
        base = {
            "service": {"state_dir": str(tmp_path / "state")},
            "user_data_collection": {
                "feedback_enabled": True,
                "feedback_storage": str(tmp_path / "data" / "feedback"),
                "transcripts_enabled": True,
                "transcripts_storage": str(tmp_path / "data" / "transcripts"),
                "data_collector": {
                    "enabled": True,
                    "ingress_server_url": ingress.url,
                    "ingress_server_auth_token": TOKEN,
                    "ingress_content_service_name": "lightspeed",
                    "collection_interval": 3600,
                    "connection_timeout_seconds": 2,
                },
            },
            "collector": {
                "retry": {"initial_seconds": 0.01, "max_seconds": 0.05, "jitter_seconds": 0, "max_attempts": 4}
            },
        }
        return config_from_mapping(deep_merge(base, sections))

    return build
