"""The build worker refuses to run a tenant's step on a runc vulnerable to
CVE-2024-21626, as the agent refuses to start on one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.errors import BuildFailed
from tests.agent.test_runc import FAKE_VULNERABLE_RUNC


@pytest.mark.root
def test_a_build_with_a_run_step_refuses_a_vulnerable_runc(engine_config, tmp_path):
    fake = tmp_path / "vulnerable-runc"
    fake.write_text(FAKE_VULNERABLE_RUNC)
    fake.chmod(0o755)
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM stack\nRUN touch /ran\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed, match="CVE-2024-21626"):
        build_image(
            source_dir=src, app="cve-probe", build_id="b1", version=1,
            config=replace(engine_config, runc_binary=str(fake)), log=lines.append,
        )  # fmt: skip
    assert not any(line.startswith("-----> RUN") for line in lines)  # no step ran
    # The real runc passes the same check (its verdict is cached).
    build_image(
        source_dir=src, app="cve-probe", build_id="b2", version=1, config=engine_config,
        log=lines.append,
    )  # fmt: skip
