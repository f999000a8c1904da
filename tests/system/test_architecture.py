"""The architecture holds: three daemons side by side on one foundation, and small modules.

The import contracts themselves are in pyproject.toml ([tool.importlinter]) and
`make check` runs them; these tests prove the contracts catch what they are for,
and that the daemons that do not answer queries never load the embedding stack.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
HEAVY = ("torch", "sentence_transformers", "transformers")


def loaded_modules(module: str, then: str = "pass") -> set[str]:
    """`sys.modules` of a fresh interpreter after `import <module>` (and the statement `then`)."""
    code = f"import json, sys, {module}; {then}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("entry", ["collector.commands", "collector.daemon", "ingest.commands", "ingest.app"])
def test_the_collector_and_the_ingest_load_neither_torch_nor_the_server(entry: str) -> None:
    modules = loaded_modules(entry)
    assert entry in modules
    assert any(name.startswith("lightspeed_common.") for name in modules)
    assert not [name for name in modules if name.split(".")[0] in HEAVY]
    assert not [name for name in modules if name == "lightspeed" or name.startswith("lightspeed.")]


@pytest.mark.parametrize(
    ("entry", "command"),
    [("collector.__main__", "status"), ("ingest.__main__", "check-config"), ("lightspeed.__main__", "check-config")],
)
def test_a_daemons_command_line_parses_without_loading_what_its_commands_run(entry: str, command: str) -> None:
    """`--help` and `--version` answer in a tenth of a second, not the most of a second that the config,
    the web stack and logging take to load: the entry point parses its arguments, then loads the
    command's module (commands.py)."""
    modules = loaded_modules(entry, then=f"assert {entry}.parse_args([{command!r}]).command == {command!r}")
    assert entry in modules
    assert not [name for name in modules if name.split(".")[0] in ("pydantic", "aiohttp", "structlog", *HEAVY)]
    assert f"{entry.split('.', maxsplit=1)[0]}.commands" not in modules


def test_the_server_loads_the_embedding_stack_when_it_loads_a_model() -> None:
    """The check above can fail: the server does load torch, once it loads a model."""
    modules = loaded_modules(
        "lightspeed.models.embedding",
        then="lightspeed.models.embedding.load_sentence_transformer(lightspeed.models.embedding.default_model_path())",
    )
    assert {"torch", "sentence_transformers"} <= modules


def _lint_imports_on_a_copy(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of src/ with `extra` lines appended to the named modules."""
    copy = tmp_path / "repo"
    shutil.copytree(SRC, copy / "src", ignore=shutil.ignore_patterns("__pycache__", "web"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(REPO / "dev", copy / "dev", ignore=shutil.ignore_patterns("__pycache__"))
    for relpath, line in extra.items():
        with (copy / "src" / relpath).open("a", encoding="utf-8") as module:
            module.write(f"\n{line}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=copy,
        env={"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("collector/daemon.py", "import ingest.app  # noqa", "none imports another"),
        ("ingest/storage.py", "from lightspeed.api import state  # noqa", "none imports another"),
        ("lightspeed/store/queries.py", "import collector.spool  # noqa", "none imports another"),
        ("lightspeed_common/atomic.py", "import lightspeed.metrics  # noqa", "foundation imports no daemon"),
        ("ingest/archive.py", "import sentence_transformers  # noqa", "loads the embedding stack"),
        ("lightspeed_common/lonely.py", "ONLY_ONE_USER = 1", "two daemons"),
        ("lightspeed/models/sources.py", "import lightspeed.answers.answering  # noqa", "No circles"),
        ("lightspeed/store/schema.py", "import lightspeed.api.state  # noqa", "import it"),
    ],
)
def test_the_import_contracts_fail_when_a_daemon_reaches_into_another(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = _lint_imports_on_a_copy(tmp_path, {module: line})
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout


def test_the_import_contracts_hold_on_the_tree_as_it_is(tmp_path: Path) -> None:
    result = _lint_imports_on_a_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def _python_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_under_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in _python_files() if (n := len(p.read_text().splitlines())) >= 400}
    assert long == {}


def test_no_function_is_over_50_lines() -> None:
    long = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 50:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = lines
    assert long == {}


HANDLERS = SRC / "lightspeed" / "api" / "handlers"


def test_no_handler_imports_another() -> None:
    imported = {
        f"{path.stem} imports {node.module}"
        for path in HANDLERS.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightspeed.api.handlers")
    }
    assert imported == set()


def _app_reads(node: ast.AST, helpers: dict[str, ast.AST], seen: set[str]) -> set[str]:
    """The app keys a handler reads (`app[KEY]`), counting each field of `app[SERVER]` as a key of
    its own, through the module's own helper functions and classes."""
    reads = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Name) and sub.slice.id.isupper():
            reads.add(sub.slice.id)
        if isinstance(sub, ast.Attribute) and (
            (isinstance(sub.value, ast.Name) and sub.value.id == "server")
            or (isinstance(sub.value, ast.Subscript) and getattr(sub.value.slice, "id", None) == "SERVER")
        ):
            reads.add(f"SERVER.{sub.attr}")
        called = sub.func.id if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) else None
        if called in helpers and called not in seen:
            seen.add(called)
            reads |= _app_reads(helpers[called], helpers, seen)
    # SERVER only through its fields; REQUEST_ID and USER are the request's.
    return reads - {"SERVER", "REQUEST_ID", "USER"}


def handler_reads() -> dict[str, set[str]]:
    found = {}
    for path in sorted(HANDLERS.glob("*.py")):
        tree = ast.parse(path.read_text())
        helpers: dict[str, ast.AST] = {
            n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        for name, node in helpers.items():
            if isinstance(node, ast.AsyncFunctionDef) and node.args.args and node.args.args[0].arg == "request":
                found[f"{path.stem}.{name}"] = _app_reads(node, helpers, {name})
    return found


def test_each_handler_reads_at_most_four_app_keys() -> None:
    reads = handler_reads()
    assert len(reads) > 30  # the walk finds the handlers
    assert {"SERVER.turns", "STREAMS"} == reads["query.streaming_query"]
    assert {name: keys for name, keys in reads.items() if len(keys) > 4} == {}


def test_only_the_guarded_site_reaches_into_aiohttp_internals() -> None:
    """aiohttp is pinned below its next minor for lightspeed_common/http/guarded_site.py alone."""
    private = (
        "aiohttp.web_protocol",
        "_request_count",
        "self._runner",
        "self._server =",
        "web.BaseSite.start",
        "_scheduled",  # asyncio's timers (the accept back-off)
    )
    found = {
        f"{path.relative_to(SRC)}: {needle}"
        for path in _python_files()
        for needle in private
        if needle in path.read_text()
    }
    adapter = "lightspeed_common/http/guarded_site.py"
    assert {row for row in found if not row.startswith(adapter)} == set()
    assert f"{adapter}: _request_count" in found  # the search finds what it looks for
