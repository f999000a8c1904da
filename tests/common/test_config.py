"""Configuration: the spec's keys and defaults, unknown keys, env overrides, check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG, ConfigError, StorageError
from tests.conftest import ConfigFactory, StartupFailure

REPO = Path(__file__).resolve().parents[2]
SPEC_EXAMPLE = """
user_data_collection:
  feedback_enabled: true
  feedback_storage: "/tmp/data/feedback"
  transcripts_enabled: true
  transcripts_storage: "/tmp/data/transcripts"
  data_collector:
    enabled: false
    ingress_server_url: "https://example.ingress.com/upload"
    ingress_server_auth_token: xxyyzz
    ingress_content_service_name: null
    collection_interval: 7200
    cleanup_after_send: true
    connection_timeout_seconds: 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lightspeed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_user_data_collection_has_exactly_the_spec_keys_and_defaults() -> None:
    """The section's keys and defaults are the spec's; the one key added (issue 26) keeps its behaviour."""
    udc = AppConfig().user_data_collection
    assert set(type(udc).model_fields) == {
        "feedback_enabled",
        "feedback_storage",
        "transcripts_enabled",
        "transcripts_storage",
        "data_collector",
        "retention_days",
    }
    assert udc.retention_days is None  # records are kept until shipped, as the spec does
    dc = udc.data_collector
    assert set(type(dc).model_fields) == {
        "enabled",
        "ingress_server_url",
        "ingress_server_auth_token",
        "ingress_content_service_name",
        "collection_interval",
        "cleanup_after_send",
        "connection_timeout_seconds",
    }
    assert (dc.enabled, dc.collection_interval, dc.cleanup_after_send, dc.connection_timeout_seconds) == (
        False,
        7200,
        True,
        30,
    )


def test_the_spec_example_loads(tmp_path: Path) -> None:
    """The spec's own example section is a valid config file."""
    config = load_config(write(tmp_path, SPEC_EXAMPLE))
    assert config.user_data_collection.feedback_storage == Path("/tmp/data/feedback")
    token = config.user_data_collection.data_collector.ingress_server_auth_token
    assert token is not None
    assert token.get_secret_value() == "xxyyzz"


def test_an_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    """A misspelt key fails with its dotted path and the file name."""
    path = write(tmp_path, "user_data_collection:\n  feedback_enabeld: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "unknown key 'user_data_collection.feedback_enabeld'" in str(caught.value)


def test_secrets_never_appear_in_config_errors(tmp_path: Path) -> None:
    """A wrong-typed secret is reported by key, never by value."""
    path = write(tmp_path, "user_data_collection:\n  data_collector:\n    ingress_server_auth_token: [s3cr3t-value]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "ingress_server_auth_token" in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_enabled_needs_its_storage_and_destination(tmp_path: Path) -> None:
    """feedback_enabled without feedback_storage, or an enabled collector without a URL, is an error."""
    with pytest.raises(ConfigError, match="feedback_storage is required"):
        load_config(write(tmp_path, "user_data_collection:\n  feedback_enabled: true\n"))
    with pytest.raises(ConfigError, match="ingress_server_url is required"):
        load_config(write(tmp_path, "user_data_collection:\n  data_collector:\n    enabled: true\n"))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LIGHTSPEED__SECTION__KEY wins over the YAML value."""
    path = write(tmp_path, "service:\n  port: 8080\n")
    monkeypatch.setenv("LIGHTSPEED__SERVICE__PORT", "9099")
    monkeypatch.setenv("LIGHTSPEED__USER_DATA_COLLECTION__DATA_COLLECTOR__COLLECTION_INTERVAL", "60")
    config = load_config(path)
    assert config.service.port == 9099
    assert config.user_data_collection.data_collector.collection_interval == 60


def test_config_is_frozen() -> None:
    """Nothing changes the configuration after loading."""
    config = AppConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.service.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("text", ["[1, 2]", "service: [", "service:\n  port: eighty\n"])
def test_malformed_files_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))


def test_a_yaml_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    """Item 23.23: the position is in the file, not in "<unicode string>"."""
    path = write(tmp_path, "service:\n  port: 8080\n  host: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f'in "{path}", line' in str(caught.value)
    assert "<unicode string>" not in str(caught.value)


def test_a_library_logger_set_to_debug_is_held_to_the_configured_level() -> None:
    """Item 23.23: bm25s sets its own logger to DEBUG; with logging.level info its debug lines stay out."""
    code = (
        "import logging\n"
        "from lightspeed_common.logs import configure_logging\n"
        "configure_logging('info', 'json')\n"
        "library = logging.getLogger('bm25s')\n"
        "library.setLevel(logging.DEBUG)\n"
        "library.debug('a-debug-line')\n"
        "library.info('an-info-line')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    printed = out.stdout + out.stderr
    assert "an-info-line" in printed
    assert "a-debug-line" not in printed


@pytest.mark.parametrize("name", ["lightspeed.yaml", "lightspeed.production.yaml", "ingest.production.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    """Every config file in the repository validates on any machine."""
    load_config(REPO / "config" / name)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightspeed", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(write(tmp_path, SPEC_EXAMPLE)))
    assert result.returncode == 0
    assert "OK" in result.stdout


def test_check_config_rejects_a_bad_file_with_the_reason(tmp_path: Path) -> None:
    """check-config exits 78 and names the key."""
    path = write(tmp_path, yaml.safe_dump({"service": {"prot": 1}}))
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "unknown key 'service.prot'" in result.stderr


def test_check_config_reports_a_missing_file(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == EXIT_CONFIG
    assert "absent.yaml" in result.stderr
    assert "No such file" in result.stderr


def _bad_setups(tmp_path: Path, docs_dir: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Configs that parse but cannot start on this machine, with the key each problem is reported under."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    openai = {"provider": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}
    return {
        "openai_without_documents": (
            {"answers": openai | {"local": {"documents_dir": str(tmp_path / "no-docs")}}},
            "answers.local.documents_dir",
        ),
        "missing_documents": ({"answers": {"local": {"documents_dir": str(tmp_path / "none")}}}, "documents_dir"),
        "unreadable_openai_key": (
            {"answers": openai | {"openai": openai["openai"] | {"api_key_file": str(tmp_path / "no-key")}}},
            "answers.openai.api_key_file",
        ),
        "missing_api_keys_file": (
            {"authentication": {"module": "api-key", "api_key": {"keys_file": str(tmp_path / "no-keys.yaml")}}},
            "authentication.api_key",
        ),
        "missing_embedding_model": (
            {"answers": {"local": {"embedding_model_path": str(tmp_path / "no-model")}}},
            "answers.local.embedding_model_path",
        ),
        "storage_under_a_file": (
            {"user_data_collection": {"feedback_storage": str(a_file / "feedback")}},
            "feedback_storage",
        ),
    }


BAD_SETUPS = [
    "openai_without_documents",
    "missing_documents",
    "unreadable_openai_key",
    "missing_api_keys_file",
    "missing_embedding_model",
    "storage_under_a_file",
]


@pytest.mark.parametrize("name", BAD_SETUPS)
async def test_check_config_fails_where_serve_fails(
    name: str, tmp_path: Path, docs_dir: Path, make_config: ConfigFactory, startup_failure: StartupFailure
) -> None:
    """Every check start-up makes, check-config makes too: same verdict, same key named."""
    sections, key = _bad_setups(tmp_path, docs_dir)[name]
    config = make_config(**sections)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    checked = run_cli("check-config", "--config", str(path))
    failure = await startup_failure(config)
    assert checked.returncode in (EXIT_CONFIG, EXIT_CANTCREAT), checked.stdout
    assert key in checked.stderr
    assert isinstance(failure, ConfigError | StorageError)
    assert key in (failure.source if isinstance(failure, ConfigError) else failure.what)


def test_check_config_warns_about_noop_auth_off_loopback(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"service": {"host": "0.0.0.0"}}))
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0
    assert "warning: authentication.module is noop and service.host is 0.0.0.0" in result.stderr
    quiet = run_cli("check-config", "--config", str(write(tmp_path, yaml.safe_dump({"service": {"port": 8081}}))))
    assert "warning" not in quiet.stderr


def test_an_invalid_redaction_pattern_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"redaction": {"patterns": [{"name": "x", "pattern": "([a-z"}]}}))
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == EXIT_CONFIG
    assert "not a valid regular expression" in result.stderr
