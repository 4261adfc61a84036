"""A newcomer's first uploads: the one-file hello world (no dependency
file) and a Flask app whose requirements come from the real package index,
each built and then served by a real runtime agent."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from paas.builds.engine.build import build_image
from tests.builds.engine.agent_run import body_served_by_agent
from tests.builds.engine.support import assert_serves


@pytest.mark.root
def test_a_one_file_hello_world_builds_and_serves_get_slash(engine_config, sample, image_store_dir):
    app = f"hello-{uuid.uuid4().hex[:6]}"
    lines: list[str] = []
    result = build_image(
        source_dir=sample("hello-one-file"), app=app, build_id="b1", version=1,
        config=engine_config, log=lines.append,
    )  # fmt: skip
    log = "\n".join(lines)
    assert "detected a python app: app.py found and no dependency file" in log
    assert [s.name for s in result.steps] == ["add source", "push"]  # nothing installed
    # On $PORT, not only on its default 8080.
    body = body_served_by_agent(
        engine_config.registry, image_store_dir, result.digest_ref, port=5005
    )
    assert body == "hello, world"


@pytest.mark.root
@pytest.mark.timeout(900)
def test_a_flask_app_builds_against_the_real_index_and_serves_through_gunicorn(
    engine_config, sample, image_store_dir, tmp_path
):
    """The one test that goes to the real package index, as the platform
    does: pip's default index, reached through the build network with the
    host's CA bundle mounted (behind a TLS-inspecting proxy nothing else
    verifies). A fresh download cache, so pip really fetches."""
    config = replace(engine_config, pip_index_url=None, cache_dir=tmp_path / "cache")
    assert config.trust.ca_bundle is not None
    lines: list[str] = []
    result = build_image(
        source_dir=sample("flask-gunicorn"), app=f"flask-{uuid.uuid4().hex[:6]}",
        build_id="b1", version=1, config=config, log=lines.append,
    )  # fmt: skip
    log = "\n".join(lines)
    assert "detected a python app: requirements.txt found" in log
    assert result.steps[0].name == "install dependencies (requirements.txt)"
    assert result.steps[0].cached is False
    installed = next(line for line in lines if "Successfully installed" in line)
    assert "flask-" in installed and "gunicorn-" in installed
    assert result.process_types["web"].startswith("gunicorn")
    body = body_served_by_agent(config.registry, image_store_dir, result.digest_ref)
    assert body == "hello from flask"


@pytest.mark.root
@pytest.mark.parametrize(
    ("name", "why", "body"),
    [
        ("wsgi-only", "wsgi.py found and no dependency file", "hello from a lone wsgi.py"),
        ("procfile-only", "the Procfile's 'web' process runs python",
         "hello from a Procfile-only app"),
    ],
)  # fmt: skip
def test_other_small_python_apps_build_without_an_install_step(
    name, why, body, engine_config, sample, image_store, build_network, tmp_path
):
    lines: list[str] = []
    result = build_image(
        source_dir=sample(name), app=f"{name}-{uuid.uuid4().hex[:6]}", build_id="b1",
        version=1, config=engine_config, log=lines.append,
    )  # fmt: skip
    assert why in "\n".join(lines)
    assert [s.name for s in result.steps] == ["add source", "push"]
    assert_serves(image_store, result.digest_ref, build_network[1], tmp_path / "run", body)
