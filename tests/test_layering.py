"""The rules of the house, read from the code's imports (AST, no import
side effects): the agent never imports the control plane (nor Django); the control
plane uses the agent's host toolkit and wire format, never its daemon; the
toolkit knows nothing of the daemon; bench/ has its own helpers, not the
tests'; no class grows past 250 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAEMON = ("runtime_agent.api", "runtime_agent.containers", "runtime_agent.config",
          "runtime_agent.join", "runtime_agent.router_sources",
          "runtime_agent.__main__")  # fmt: skip
TOOLKIT = ("host", "oci", "images", "net")
MAX_CLASS_LINES = 250


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, spelled out (``from a import b`` gives
    both ``a`` and ``a.b``, since b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def offences(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sources(package)
        for name in sorted(imported_modules(path))
        if within(name, forbidden)
    ]


def test_the_agent_never_imports_the_control_plane():
    assert offences("runtime_agent", ("paas", "django")) == []


def test_the_control_plane_never_imports_the_agent_daemon():
    assert offences("paas", DAEMON) == []


@pytest.mark.parametrize("toolkit", TOOLKIT)
def test_the_host_toolkit_never_imports_the_daemon(toolkit):
    assert offences(f"runtime_agent/{toolkit}", DAEMON) == []


def test_the_benchmarks_never_import_the_tests():
    assert offences("bench", ("tests",)) == []


def test_the_scan_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from runtime_agent.containers import manager\nimport paas.settings\n")
    names = imported_modules(bad)
    assert within("runtime_agent.containers.manager", DAEMON)
    assert {"runtime_agent.containers.manager", "paas.settings"} <= names


def test_wire_imports_without_the_http_server():
    code = "import sys, runtime_agent.wire; sys.exit('aiohttp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_no_class_is_longer_than_250_lines():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({size} lines)"
        for package in ("runtime_agent", "paas", "cli", "bench")
        for path in sources(package)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and (size := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_CLASS_LINES
    ]
    assert long == []
