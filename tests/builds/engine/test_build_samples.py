"""Each sample app builds into an image in a real registry, and the image,
pulled and run with runc in its own netns, answers HTTP on $PORT."""

from __future__ import annotations

import json
import uuid

import pytest

from paas.builds.engine.build import build_image
from tests.builds.engine.support import assert_serves

SAMPLES = {
    # name: (kind, expected body, working dir)
    "python-nodeps": ("python", "hello from python-nodeps", "/app"),
    "python-deps": ("python", "hello from tinydep", "/app"),
    "node-nodeps": ("node", "hello from node-nodeps", "/app"),
    "static": ("static", "<h1>hello from static</h1>\n", "/app"),
    "procfile": ("python", "hello from the procfile web process", "/app"),
    "dockerfile": ("dockerfile", "hello from a Dockerfile (built by RUN)", "/srv/app"),
}


@pytest.mark.root
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_sample_builds_and_its_image_answers_http(
    name, engine_config, sample, image_store, build_network, tmp_path
):
    kind, body, workdir = SAMPLES[name]
    app = f"{name}-{uuid.uuid4().hex[:6]}"
    lines: list[str] = []
    result = build_image(
        source_dir=sample(name), app=app, build_id="build-1", version=1,
        config=engine_config, log=lines.append, secrets=[],
    )  # fmt: skip
    assert result.kind == kind
    assert result.image_ref == f"{engine_config.registry.host}/{app}:v1"
    assert f"detected a {kind} app" in "\n".join(lines)

    image = image_store.pull(result.digest_ref)
    assert image.digest == result.digest
    config = image.config["config"]
    assert "PORT=8080" in config["Env"]
    assert config["WorkingDir"] == workdir
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    labels = config["Labels"]
    assert labels["paas.app"] == app
    assert labels["paas.build-id"] == "build-1"
    assert labels["paas.source-digest"].startswith("sha256:")
    assert json.loads(labels["paas.procfile"]) == result.process_types

    assert_serves(image_store, result.digest_ref, build_network[1], tmp_path / "run", body)


@pytest.mark.root
def test_python_without_dependencies_starts_no_container(engine_config, sample):
    lines: list[str] = []
    result = build_image(
        source_dir=sample("python-nodeps"), app=f"nodeps-{uuid.uuid4().hex[:6]}",
        build_id="b", version=1, config=engine_config, log=lines.append,
    )  # fmt: skip
    assert [s.name for s in result.steps] == ["add source", "push"]
    assert not any("pip" in line for line in lines)
    config = json.dumps(result.__dict__, default=str)
    assert "install dependencies" not in config


@pytest.mark.root
def test_procfile_types_are_recorded_whatever_the_kind(engine_config, sample):
    result = build_image(
        source_dir=sample("procfile"), app=f"procs-{uuid.uuid4().hex[:6]}",
        build_id="b", version=1, config=engine_config, log=lambda line: None,
    )  # fmt: skip
    assert result.process_types == {
        "web": "python3 web.py --port $PORT",
        "worker": "python3 worker.py",
    }


@pytest.mark.root
def test_the_python_image_puts_the_venv_first_on_path(engine_config, sample, image_store):
    result = build_image(
        source_dir=sample("python-deps"), app=f"venv-{uuid.uuid4().hex[:6]}",
        build_id="b", version=1, config=engine_config, log=lambda line: None,
    )  # fmt: skip
    env = image_store.pull(result.digest_ref).config["config"]["Env"]
    path = next(e for e in env if e.startswith("PATH="))
    assert path.startswith("PATH=/app/.venv/bin:")
