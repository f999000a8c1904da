"""`lightspeed models ...` and `lightspeed telemetry ...` against a running server, as an operator types them."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from dataclasses import dataclass
from pathlib import Path

from lightspeed.cli import EXIT_REFUSED, EXIT_UNAVAILABLE
from lightspeed_common.errors import EXIT_CONFIG
from tests.conftest import ClientFactory, ConfigFactory
from tests.fake_llm import free_port
from tests.processes import process_config, start, wait_ready
from tests.registry import Registry, fast_telemetry
from tests.telemetry_support import stored_settings


@dataclass
class Run:
    code: int
    out: str
    err: str


async def lightspeed(*args: str, stdin: str = "", env: dict[str, str] | None = None, typed: str | None = None) -> Run:
    """The CLI as a process; `typed` is what a person types at a terminal (stdin is then a pseudo-terminal)."""
    terminal = pty.openpty() if typed is not None else None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lightspeed",
        *args,
        stdin=terminal[1] if terminal else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    if terminal:
        os.close(terminal[1])
        os.write(terminal[0], (typed or "").encode())
        out, err = await proc.communicate()
        os.close(terminal[0])
    else:
        out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_an_operator_registers_activates_and_shares_a_model_from_the_command_line(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    url = ["--url", str(client.make_url("")).rstrip("/")]

    declined = await lightspeed("telemetry", "enable", *url, typed="n\n")
    enabled = await lightspeed("telemetry", "enable", *url, typed="y\n")
    registered = await lightspeed("models", "register", "all-MiniLM-L6-v2", "--activate", *url)
    listed = await lightspeed("models", "list", *url)
    activated = await lightspeed("models", "activate", "all-MiniLM-L6-v2", *url)
    status = await lightspeed("telemetry", "status", *url)
    queue = await lightspeed("telemetry", "queue", *url)
    sent = await lightspeed("telemetry", "send", *url)
    disabled = await lightspeed("telemetry", "disable", *url)
    purged = await lightspeed("telemetry", "purge", *url)
    await client.close()

    assert declined.code == 0
    assert "client_id" in declined.out  # the fields were shown before the question
    assert "telemetry stays off" in declined.out
    assert enabled.code == 0
    assert "telemetry enabled; client id" in enabled.out
    assert registered.code == 0, registered.err
    assert "embedding_dimension: 384" in registered.out
    assert "telemetry: event queued" in registered.out
    assert "all-MiniLM-L6-v2" in listed.out
    assert activated.code == 0
    assert "all-MiniLM-L6-v2 is active" in activated.out
    assert "enabled" in status.out
    assert "1 events" in status.out
    [line] = queue.out.splitlines()
    assert json.loads(line)["model_name"] == "all-MiniLM-L6-v2"
    assert sent.code == 0
    assert "sent: 1 accepted, 0 rejected" in sent.out
    assert [e["model_name"] for e in registry.events] == ["all-MiniLM-L6-v2"]
    assert disabled.code == 0
    assert "telemetry disabled" in disabled.out
    assert purged.code == 0  # with nothing queued it does not even ask
    assert "nothing queued; nothing to purge" in purged.out


async def test_the_command_line_says_why_it_failed(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("- {key: admin-key, user_id: root, role: admin}\n")
    key_file = tmp_path / "admin.key"
    key_file.write_text("admin-key\n")
    client = await make_client(make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}}))
    url = ["--url", str(client.make_url("")).rstrip("/")]

    no_key = await lightspeed("models", "list", *url)
    bad_model = await lightspeed("models", "register", "/etc/passwd", "--api-key-file", str(key_file), *url)
    missing = await lightspeed("models", "register", "acme/nowhere", "--api-key-file", str(key_file), *url)
    from_env = await lightspeed("telemetry", "enable", "--yes", *url, env={"LIGHTSPEED_API_KEY": "admin-key"})
    await client.close()
    unreachable = await lightspeed("telemetry", "status", "--url", f"http://127.0.0.1:{free_port()}")

    assert no_key.code == EXIT_REFUSED
    assert "No Authorization header found" in no_key.err
    assert bad_model.code == EXIT_REFUSED
    assert "never a file path" in bad_model.err
    assert missing.code == EXIT_REFUSED
    assert "not_available_offline" in missing.err
    assert from_env.code == EXIT_REFUSED
    assert "telemetry.registry_url is not configured" in from_env.err
    assert "admin-key" not in no_key.err + bad_model.err + missing.err + from_env.err
    assert unreachable.code == EXIT_UNAVAILABLE
    assert "cannot reach the lightspeed server" in unreachable.err


async def test_the_command_line_helps_a_newcomer(make_client: ClientFactory, make_config: ConfigFactory) -> None:
    """Item 23.23: every argument has help; without --config or --url and without the default config
    file the default address is used (it was exit 78, "cannot read the file"); `telemetry send` while
    off says how to turn it on (it said "Telemetry is not enabled: not enabled")."""
    register = await lightspeed("models", "register", "--help")
    activate = await lightspeed("models", "activate", "--help")
    assert "where the model comes from" in register.out
    assert "a registered model's name" in activate.out
    defaults = await lightspeed("telemetry", "status")
    if not await asyncio.to_thread(Path("/etc/lightspeed/lightspeed.yaml").exists):
        assert defaults.code != EXIT_CONFIG, defaults.err
        assert "cannot read the file" not in defaults.err
        assert defaults.code == 0 or "127.0.0.1:8080" in defaults.err
    client = await make_client(make_config(telemetry={"registry_url": f"http://127.0.0.1:{free_port()}"}))
    off = await lightspeed("telemetry", "send", "--url", str(client.make_url("")).rstrip("/"))
    await client.close()
    assert off.code == EXIT_REFUSED
    assert "Telemetry is not enabled" in off.err
    assert "`lightspeed telemetry enable`" in off.err
    assert "not enabled: not enabled" not in off.err


def test_serve_with_the_reset_argument_replaces_the_client_id_and_logs_it(tmp_path: Path, docs_dir: Path) -> None:
    """The only way to change the client id: an explicit argument at start-up."""
    port = free_port()
    config = process_config(tmp_path, docs_dir, port)
    state = Path(config["service"]["state_dir"])
    state.mkdir(parents=True)
    old_id = "0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10"
    (state / "settings.json").write_text(json.dumps({"telemetry": {"enabled": False, "client_id": old_id}}))
    proc = start(config, tmp_path, "--reset-telemetry-client-id")
    try:
        wait_ready(port, proc)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]

    assert proc.returncode == 0
    assert '"event": "telemetry_client_id_reset"' in output
    assert old_id not in output
    assert stored_settings(state)["telemetry"]["client_id"] is None


async def test_questions_without_a_terminal_are_refused_naming_yes(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """In a script, a pipe or CI nobody can answer: exit 2 with a line naming --yes, never a traceback."""
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url, first_send_delay_seconds=600)))
    url = ["--url", str(client.make_url("")).rstrip("/")]
    enable = await lightspeed("telemetry", "enable", *url)
    piped = await lightspeed("telemetry", "enable", *url, stdin="y\n")
    enabled = await lightspeed("telemetry", "enable", "--yes", *url)
    registered = await lightspeed("models", "register", "all-MiniLM-L6-v2", *url)  # one event queued
    purge = await lightspeed("telemetry", "purge", *url)
    deletion = await lightspeed("telemetry", "request-deletion", *url)
    await client.close()

    for run, command in ((enable, "enable"), (piped, "enable"), (purge, "purge"), (deletion, "request-deletion")):
        assert run.code == 2, run.err
        assert f"`lightspeed telemetry {command}` asks for confirmation" in run.err
        assert "--yes" in run.err
        assert "Traceback" not in run.err
    assert enabled.code == 0
    assert registered.code == 0
