"""Paths of the buildpacks and the Dockerfile reader beyond the samples."""

from __future__ import annotations

import json
import uuid

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.tenant import ANONYMOUS, Tenant
from tests.builds.engine.support import assert_serves


def build(config, source, app, version=1, lines=None, tenant=ANONYMOUS):
    return build_image(
        source_dir=source, app=app, build_id=f"b{version}", version=version, config=config,
        log=(lines if lines is not None else []).append, tenant=tenant,
    )  # fmt: skip


@pytest.mark.root
def test_node_with_a_lockfile_runs_npm_ci_once(engine_config, sample):
    src = sample("node-nodeps")
    app = f"npmci-{uuid.uuid4().hex[:6]}"
    lock = {
        "name": "node-nodeps", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
        "packages": {"": {"name": "node-nodeps", "version": "1.0.0"}},
        "x-run": app,  # a lockfile no other test has: the first build installs
    }  # fmt: skip
    (src / "package-lock.json").write_text(json.dumps(lock))
    lines: list[str] = []
    first = build(engine_config, src, app, 1, lines)
    assert first.steps[0].name == "install dependencies (npm ci)"
    assert first.steps[0].cached is False
    (src / "server.js").write_text((src / "server.js").read_text() + "\n// changed\n")
    lines = []
    second = build(engine_config, src, app, 2, lines)
    assert second.steps[0].cached is True
    assert "(npm not run)" in "\n".join(lines)


@pytest.mark.root
def test_a_dockerfile_can_start_from_an_app_image_in_the_registry(
    engine_config, sample, tmp_path, image_store, build_network
):
    base_app = f"base-{uuid.uuid4().hex[:6]}"
    derived_app = f"derived-{uuid.uuid4().hex[:6]}"
    team = Tenant(team="t-derived", apps=frozenset({base_app, derived_app}))
    build(engine_config, sample("python-nodeps"), base_app, tenant=team)
    src = tmp_path / "src-from-app"
    src.mkdir()
    (src / "Dockerfile").write_text(
        f"FROM {base_app}:v1\nRUN sed -i 's/python-nodeps/a derived image/' /app/app.py\n"
    )
    derived = build(engine_config, src, derived_app, tenant=team)
    image = image_store.pull(derived.digest_ref)
    labels = image.config["config"]["Labels"]
    assert labels["paas.app"].startswith("derived-")  # not the base's labels
    assert_serves(
        image_store,
        derived.digest_ref,
        build_network[1],
        tmp_path / "run",
        "hello from a derived image",
    )
