"""ROOT/router_sources as the API's push leaves it (runtime_agent/router_sources.py):
replaced whole, read back by the next start, never through a link."""

from __future__ import annotations

import os
import threading
from ipaddress import IPv4Network
from pathlib import Path

from runtime_agent import router_sources
from runtime_agent.config import AgentConfig

SOURCES = (IPv4Network("10.1.0.1/32"), IPv4Network("10.2.0.0/24"))


def test_a_pushed_list_is_what_the_next_start_reads(tmp_path: Path) -> None:
    (tmp_path / "router_sources").write_text("192.0.2.1/32\n")
    router_sources.write(tmp_path, SOURCES)
    config = AgentConfig.from_env({"PAAS_AGENT_ROOT": str(tmp_path),
                                   "PAAS_AGENT_TOKEN": "alice-token-0123456789abcdef"})  # fmt: skip
    assert config.router_sources == SOURCES
    assert router_sources.read(tmp_path) == SOURCES
    # Nothing left beside it, and only root reads it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router_sources"]
    assert (tmp_path / "router_sources").stat().st_mode & 0o777 == 0o600


def test_an_empty_list_is_written_as_none(tmp_path: Path) -> None:
    router_sources.write(tmp_path, ())
    assert router_sources.read(tmp_path) == ()


def test_a_link_in_its_place_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(elsewhere, root / "router_sources")
    router_sources.write(root, SOURCES)
    assert elsewhere.read_text() == "keep\n"
    assert not (root / "router_sources").is_symlink()
    assert router_sources.read(root) == SOURCES


def test_a_leftover_from_a_crash_does_not_stop_the_next_write(tmp_path: Path) -> None:
    leftover = tmp_path / f".router_sources.{os.getpid()}.{threading.get_ident()}"
    leftover.write_text("half")
    router_sources.write(tmp_path, SOURCES)
    assert not leftover.exists()
    assert router_sources.read(tmp_path) == SOURCES
