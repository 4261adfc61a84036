"""Builds that must fail, with the step, command and exit code, and leave
nothing tagged, mounted or running behind."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.config import BuildLimits
from paas.builds.engine.errors import BuildFailed
from runtime_agent.oci.runc import Runc
from tests.builds.engine.support import mounts_under


def dockerfile_app(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src-docker"
    src.mkdir()
    (src / "Dockerfile").write_text(text)
    return src


def build(config, source: Path, app: str, lines: list[str] | None = None, **kwargs):
    return build_image(
        source_dir=source, app=app, build_id="b", version=1, config=config,
        log=(lines if lines is not None else []).append, **kwargs,
    )  # fmt: skip


def assert_nothing_left(config, app: str, build_network) -> None:
    with config.registry.client() as client:
        assert [t for t in client.list_tags(app) if t.startswith("v")] == []
    assert Runc(config.runc_root).list() == [] if config.runc_root.exists() else True
    assert mounts_under(config.work_dir) == []
    assert list(config.work_dir.iterdir()) == []
    assert build_network[1].attachments() == {}
    parent = Path("/sys/fs/cgroup/memory") / config.cgroup_parent
    assert not parent.exists() or [p for p in parent.iterdir() if p.is_dir()] == []


@pytest.mark.root
def test_a_failing_run_fails_with_its_command_and_exit_code(engine_config, tmp_path, build_network):
    app = f"failrun-{uuid.uuid4().hex[:6]}"
    src = dockerfile_app(tmp_path, "FROM stack\nRUN echo about to fail && exit 3\nCMD true\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as exc:
        build(engine_config, src, app, lines)
    assert exc.value.step == "RUN echo about to fail && exit 3"
    assert exc.value.command == "echo about to fail && exit 3"
    assert exc.value.exit_code == 3
    assert "about to fail" in "\n".join(lines)
    assert_nothing_left(engine_config, app, build_network)


@pytest.mark.root
def test_an_unsupported_instruction_fails_the_build(engine_config, tmp_path, build_network):
    app = f"unsupported-{uuid.uuid4().hex[:6]}"
    src = dockerfile_app(tmp_path, "FROM stack\nVOLUME /data\n")
    with pytest.raises(BuildFailed, match="line 2: the VOLUME instruction is not supported"):
        build(engine_config, src, app)
    assert_nothing_left(engine_config, app, build_network)


@pytest.mark.root
def test_a_dependency_install_error_fails_the_install_step(engine_config, sample, build_network):
    app = f"baddep-{uuid.uuid4().hex[:6]}"
    src = sample("python-deps")
    (src / "requirements.txt").write_text("no-such-package-anywhere==9.9\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as exc:
        build(engine_config, src, app, lines)
    assert exc.value.step == "install dependencies (requirements.txt)"
    assert exc.value.exit_code not in (None, 0)
    assert "pip" in exc.value.command
    assert "No matching distribution found for no-such-package-anywhere" in "\n".join(lines)
    assert_nothing_left(engine_config, app, build_network)


@pytest.mark.root
def test_an_undetectable_source_fails_listing_what_was_looked_for(engine_config, tmp_path):
    src = tmp_path / "src-empty"
    src.mkdir()
    (src / "README.md").write_text("nothing to build")
    with pytest.raises(BuildFailed) as exc:
        build(engine_config, src, f"empty-{uuid.uuid4().hex[:6]}")
    assert exc.value.step == "detect"
    assert "Dockerfile, requirements.txt, pyproject.toml, package.json" in exc.value.message


@pytest.mark.root
def test_a_build_past_its_memory_limit_fails_and_the_worker_goes_on(
    engine_config, tmp_path, sample, build_network
):
    config = replace(engine_config, limits=BuildLimits(memory_bytes=64 << 20, wall_time_s=120))
    app = f"oom-{uuid.uuid4().hex[:6]}"
    hog = "python3 -c 'b = bytearray(512 << 20); print(len(b))'"
    src = dockerfile_app(tmp_path, f"FROM stack\nRUN {hog}\n")
    with pytest.raises(BuildFailed) as exc:
        build(config, src, app)
    assert "ran out of memory (limit 64 MiB)" in exc.value.message
    assert exc.value.exit_code == 137
    assert_nothing_left(config, app, build_network)
    # The same worker (process, config) builds the next app fine.
    result = build(config, sample("python-nodeps"), f"after-oom-{uuid.uuid4().hex[:6]}")
    assert result.digest.startswith("sha256:")


@pytest.mark.root
def test_a_step_past_its_wall_time_is_stopped(engine_config, tmp_path, build_network):
    config = replace(engine_config, limits=BuildLimits(wall_time_s=2))
    app = f"slow-{uuid.uuid4().hex[:6]}"
    src = dockerfile_app(tmp_path, "FROM stack\nRUN sleep 60\n")
    with pytest.raises(BuildFailed, match="did not finish within 2 s"):
        build(config, src, app)
    assert_nothing_left(config, app, build_network)


@pytest.mark.root
def test_secret_values_never_reach_the_log_or_the_error(engine_config, tmp_path):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    src = dockerfile_app(tmp_path, f"FROM stack\nRUN echo token={secret} && exit 1\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as exc:
        build(engine_config, src, f"secret-{uuid.uuid4().hex[:6]}", lines, secrets=[secret])
    text = "\n".join(lines)
    assert "token=***" in text
    assert secret not in text
    assert secret not in str(exc.value) and secret not in exc.value.command
