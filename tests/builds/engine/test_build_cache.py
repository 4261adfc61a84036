"""Caching: unchanged dependencies are not installed again, identical
source gives the identical image, layers are reproducible, old versions
are pruned."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from paas.builds.engine.build import build_image
from runtime_agent.host.errors import ImageNotFound
from tests.builds.engine.support import assert_serves


def build(config, source, app, version, lines=None):
    return build_image(
        source_dir=source, app=app, build_id=f"b{version}", version=version, config=config,
        log=(lines if lines is not None else []).append,
    )  # fmt: skip


@pytest.mark.root
def test_a_rebuild_with_unchanged_dependencies_does_not_run_pip(
    engine_config, sample, package_index, image_store, build_network, tmp_path
):
    app = f"rebuild-{uuid.uuid4().hex[:6]}"
    src = sample("python-deps")
    # A requirements text no other test uses: the first build must install.
    (src / "requirements.txt").write_text(f"# {app}\ntinydep==1.0\n")
    first = build(engine_config, src, app, 1)
    install = first.steps[0]
    assert install.name == "install dependencies (requirements.txt)"
    assert install.cached is False

    (src / "main.py").write_text((src / "main.py").read_text() + "\n# changed code\n")
    asked_before = len(package_index.requests)
    lines: list[str] = []
    second = build(engine_config, src, app, 2, lines)
    assert second.steps[0].cached is True
    assert "unchanged, using the cached layer (pip not run)" in "\n".join(lines)
    assert len(package_index.requests) == asked_before  # the index was not even asked
    assert second.digest != first.digest  # the code changed
    assert_serves(
        image_store, second.digest_ref, build_network[1], tmp_path / "run", "hello from tinydep"
    )


@pytest.mark.root
def test_identical_source_gives_the_identical_image(engine_config, sample):
    app = f"same-{uuid.uuid4().hex[:6]}"
    src = sample("static")
    first = build(engine_config, src, app, 1)
    lines: list[str] = []
    second = build(engine_config, src, app, 2, lines)
    assert second.digest == first.digest
    assert second.reused is True
    with engine_config.registry.client() as client:
        assert client.get_manifest(app, "v1")[1] == client.get_manifest(app, "v2")[1]


def layer_digests(client, result) -> list[str]:
    repo = result.image_ref.split("/", 1)[1].rsplit(":", 1)[0]
    manifest = json.loads(client.get_manifest(repo, result.digest)[0])
    return [d["digest"] for d in manifest["layers"]]


@pytest.mark.root
def test_layers_are_reproducible_across_apps(engine_config, sample):
    # Different apps get different configs (labels), but the same source
    # makes byte-identical layers, so the registry stores them once.
    src = sample("node-nodeps")
    results = [build(engine_config, src, f"repro{i}-{uuid.uuid4().hex[:6]}", 1) for i in (1, 2)]
    with engine_config.registry.client() as client:
        layers = [layer_digests(client, r) for r in results]
    assert layers[0] == layers[1]
    assert results[0].digest != results[1].digest


@pytest.mark.root
def test_images_beyond_keep_images_are_deleted(engine_config, sample):
    config = replace(engine_config, keep_images=2)
    app = f"prune-{uuid.uuid4().hex[:6]}"
    src = sample("static")
    for version in (1, 2, 3):
        (src / "public" / "index.html").write_text(f"version {version}\n")
        build(config, src, app, version)
    with config.registry.client() as client:
        with pytest.raises(ImageNotFound):
            client.get_manifest(app, "v1")
        assert client.get_manifest(app, "v3")[1]
        assert client.get_manifest(app, "v2")[1]


@pytest.mark.root
def test_pruning_keeps_what_releases_reference_when_it_prunes(engine_config, sample):
    """``protected_digests`` (the images releases still reference) outlive
    PAAS_KEEP_IMAGES' count of versions, and are asked for when pruning, not
    when the build starts: v1 made serving again (a rollback) while v3
    builds is kept, and v2 goes."""
    app = f"prune-{uuid.uuid4().hex[:6]}"
    src = sample("static")
    protected: set[str] = set()
    config = replace(engine_config, keep_images=1, protected_digests=lambda: frozenset(protected))

    def build_version(version: int, log=lambda line: None) -> str:
        (src / "public" / "index.html").write_text(f"version {version}\n")
        return build_image(
            source_dir=src, app=app, build_id=f"b{version}", version=version, config=config,
            log=log,
        ).digest  # fmt: skip

    def rollback_to_v1_meanwhile(line: str) -> None:
        if line.startswith("-----> pushing"):
            protected.clear()
            protected.add(d1)

    d1 = build_version(1)
    protected.add(d1)  # v1 serves
    d2 = build_version(2)
    with engine_config.registry.client() as client:
        assert client.get_manifest(app, "v1")[1] == d1  # protected past the count
    protected.clear()
    protected.add(d2)  # v2 serves, then a rollback to v1 while v3 builds
    d3 = build_version(3, rollback_to_v1_meanwhile)
    with engine_config.registry.client() as client:
        assert client.get_manifest(app, "v1")[1] == d1
        with pytest.raises(ImageNotFound):
            client.get_manifest(app, "v2")
        assert client.get_manifest(app, "v3")[1] == d3
