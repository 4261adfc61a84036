"""Build steps run in a user namespace with the team's id range (issue 8):
real runc, real overlay with idmapped lower layers, real layer packing."""

from __future__ import annotations

import gzip
import os
import secrets
import tarfile
import uuid
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.plan import RunStep
from paas.builds.engine.steps import StepEnv, run_step
from paas.builds.engine.tenant import Tenant
from runtime_agent.images.layers import pack_layer
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ID_RANGE_BASE, ID_RANGE_SIZE, IdRange


def _range() -> IdRange:
    # A range no real team of this host has (high team numbers), per test.
    return IdRange(host_id=ID_RANGE_BASE + (50_000 + secrets.randbelow(10_000)) * ID_RANGE_SIZE)


def _dockerfile(tmp_path: Path, name: str, text: str) -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "Dockerfile").write_text(text)
    (src / "f.txt").write_text("copied\n")
    return src


def _build(config, src: Path, tenant: Tenant) -> list[str]:
    lines: list[str] = []
    build_image(
        source_dir=src, app=f"ns-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
        config=config, log=lines.append, tenant=tenant,
    )  # fmt: skip
    return lines


def _uid_map(lines: list[str]) -> list[int]:
    marked = [line for line in lines if "MAP" in line and "$" not in line]
    assert len(marked) == 1, lines
    return [int(x) for x in marked[0].split("MAP", 1)[1].split()]


@pytest.mark.root
def test_a_run_step_is_in_the_teams_user_namespace_and_two_teams_are_disjoint(
    engine_config, tmp_path
):
    src = _dockerfile(tmp_path, "src", "FROM stack\nRUN echo MAP $(cat /proc/self/uid_map)\n")
    alice, bob = _range(), _range()
    while abs(alice.host_id - bob.host_id) < ID_RANGE_SIZE:
        bob = _range()
    maps = {}
    for team, id_range in (("alice", alice), ("bob", bob)):
        tenant = Tenant(team=f"{team}-{uuid.uuid4().hex[:6]}", id_range=id_range)
        maps[team] = _uid_map(_build(engine_config, src, tenant))
    assert maps["alice"] == [0, alice.host_id, ID_RANGE_SIZE]  # not 0 0 4294967295
    assert maps["bob"] == [0, bob.host_id, ID_RANGE_SIZE]
    a_ids = range(alice.host_id, alice.host_id + ID_RANGE_SIZE)
    b_ids = range(bob.host_id, bob.host_id + ID_RANGE_SIZE)
    assert not set(a_ids) & set(b_ids)


@pytest.mark.root
def test_a_file_a_step_writes_is_the_ranges_on_disk_and_roots_in_the_layer(
    engine_config, image_store, stack_ref, tmp_path
):
    id_range = _range()
    env = StepEnv(
        runc=Runc(engine_config.runc_root, binary=engine_config.runc_binary),
        network=None,
        limits=engine_config.limits,
        cgroup_parent=engine_config.cgroup_parent,
        id_range=id_range,
    )
    lowers = image_store.lower_dirs(image_store.pull(stack_ref))
    step = RunStep(
        name="RUN make files",
        argv=["/bin/sh", "-c", "echo hi > /made && mkdir /d && touch /d/u && chown 1000:1000 /d/u"],
    )
    upper = run_step(
        step, cid=f"build-{uuid.uuid4().hex[:12]}", lowers=lowers,
        step_dir=tmp_path / "step", env=env, say=lambda line: None,
    )  # fmt: skip
    made = os.stat(upper / "made", follow_symlinks=False)
    assert (made.st_uid, made.st_gid) == (id_range.host_id, id_range.host_id)
    assert os.stat(upper / "d" / "u").st_uid == id_range.host_id + 1000
    info = pack_layer(upper, tmp_path / "layer.tar.gz", from_overlay_upper=True, id_range=id_range)
    assert info.size > 0
    with gzip.open(tmp_path / "layer.tar.gz") as gz, tarfile.open(fileobj=gz) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["made"] == (0, 0)
    assert owners["d"] == (0, 0)
    assert owners["d/u"] == (1000, 1000)


@pytest.mark.root
def test_copy_and_run_layers_agree_on_owners_across_steps(engine_config, tmp_path):
    # A RUN layer (range's ids on disk) below a COPY (container's view) below
    # a RUN: every step sees root's files as root's.
    src = _dockerfile(
        tmp_path, "src",
        "FROM stack\nRUN mkdir /app2 && touch /app2/r\nCOPY f.txt /app2/sub/\n"
        "RUN echo MAP $(stat -c '%u:%g' /app2 /app2/r /app2/sub /app2/sub/f.txt /etc/hosts)\n",
    )  # fmt: skip
    tenant = Tenant(team=f"copy-{uuid.uuid4().hex[:6]}", id_range=_range())
    lines = _build(engine_config, src, tenant)
    marked = [line for line in lines if "MAP" in line and "$" not in line]
    assert marked and marked[0].split("MAP", 1)[1].split() == ["0:0"] * 5, lines


@pytest.mark.root
def test_a_user_named_in_the_images_passwd_runs_the_step(engine_config, tmp_path):
    # USER by name: the worker reads the image's /etc/passwd in the step's
    # idmapped rootfs (safepath.read_in_root), as the container would.
    src = _dockerfile(
        tmp_path, "src", "FROM stack\nUSER nobody\nRUN echo WHO $(id -un) $(id -u) $(id -g)\n"
    )
    tenant = Tenant(team=f"who-{uuid.uuid4().hex[:6]}", id_range=_range())
    lines = _build(engine_config, src, tenant)
    who = [line.split("WHO", 1)[1].split() for line in lines if "WHO" in line and "$" not in line]
    assert who == [["nobody", "65534", "65534"]], lines


@pytest.mark.root
def test_a_run_step_has_the_documented_capabilities_and_no_new_privs(engine_config, tmp_path):
    # The same set as the agent's containers: Docker's default less NET_RAW
    # (runtime_agent/oci/spec.py), no_new_privs, a seccomp filter.
    src = _dockerfile(
        tmp_path, "src",
        "FROM stack\nRUN grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"
        " | sed 's/^/STATUS /'\n",
    )  # fmt: skip
    tenant = Tenant(team=f"caps-{uuid.uuid4().hex[:6]}", id_range=_range())
    lines = _build(engine_config, src, tenant)
    status = dict(
        line.split("STATUS ", 1)[1].replace(":", " ", 1).split()
        for line in lines
        if "STATUS " in line and "sed" not in line
    )
    assert status == {
        "CapEff": "00000000a80405fb",
        "CapBnd": "00000000a80405fb",
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }, lines
