"""A newcomer's first uploads: the one-file hello world (no dependency
file) and a Flask app whose requirements come from the real package index,
each built and then served by a real runtime agent."""

from __future__ import annotations

import uuid

import pytest

from paas.builds.engine.build import build_image
from tests.builds.engine.agent_run import get_body, served_by_agent


@pytest.mark.root
async def test_a_one_file_hello_world_builds_and_serves_get_slash(
    engine_config, sample, image_store_dir
):
    app = f"hello-{uuid.uuid4().hex[:6]}"
    lines: list[str] = []
    result = build_image(
        source_dir=sample("hello-one-file"), app=app, build_id="b1", version=1,
        config=engine_config, log=lines.append,
    )  # fmt: skip
    log = "\n".join(lines)
    assert "detected a python app: app.py found and no dependency file" in log
    assert [s.name for s in result.steps] == ["add source", "push"]  # nothing installed
    async with served_by_agent(engine_config.registry, image_store_dir, result.digest_ref) as url:
        assert await get_body(url + "/") == "hello, world"
