"""Issue 13, fault 1 (builds): the blobs a worker pushed before it was
SIGKILLed between the layers' push and the manifest's are referenced by no
manifest. The sweep that fails the dead build asks for the registry's
garbage collection, and the next housekeeping pass (a real beat and worker,
the real ``docker-registry garbage-collect`` on this run's registry, under
the push lock) deletes them from disk: they do not wait for some image
version to be pruned, which an app that never prunes would never see."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.engine.housekeeping import clear_gc_needed
from paas.builds.models import Build, BuildState
from tests.support.registry import TestRegistry
from tests.web.archives import targz
from tests.web.deploy_support import wait_for
from tests.web.fault_support import kill_at, stop_worker_at, take_over

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def _blobs(registry: TestRegistry) -> set[str]:
    """The digests of the blobs on the registry's disk."""
    root = registry.storage_dir / "docker/registry/v2/blobs/sha256"
    return {d.name for d in root.glob("*/*") if (d / "data").is_file()}


def _linked_by_others(registry: TestRegistry, app: str) -> set[str]:
    """The digests other repositories link, layers and manifests (the
    stack's among them, published by this build's worker when the session's
    registry lacked it): the GC rightly keeps those."""
    repos = registry.storage_dir / "docker/registry/v2/repositories"
    links = [*repos.glob("**/_layers/sha256"), *repos.glob("**/_manifests/revisions/sha256")]
    return {link.name for d in links if app not in d.parts for link in d.iterdir()}


def _gc_config(registry: TestRegistry, tmp_path: Path) -> Path:
    config = tmp_path / "registry-gc.yml"
    config.write_text(
        f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {registry.storage_dir}}}}}\n"
    )
    return config


def test_blobs_of_a_push_killed_before_its_manifest_are_collected_by_the_next_housekeeping(
    client: Any, alice: Any, workers: Any, build_env: dict[str, str], registry: TestRegistry,
    tmp_path: Path,
) -> None:  # fmt: skip
    # The marker lives in the build cache, which test runs on this host
    # share: one left set by another run's pruning would make this test
    # pass without the sweep asking.
    clear_gc_needed(Path(build_env["PAAS_BUILD_CACHE_DIR"]))
    app = "dies-pushing"
    app_create(user=alice, team=alice.personal_team, name=app)
    before = _blobs(registry)
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = stop_worker_at(workers, "build.push", markers)
    client.force_login(alice)
    # A layer of its own (content no other build of the run pushed).
    dockerfile = f'FROM stack\nRUN echo "{secrets.token_hex(8)}" > /built\nCMD ["true"]\n'
    archive = SimpleUploadedFile("src.tar.gz", targz({"Dockerfile": dockerfile.encode()}))
    response = client.post(f"/apps/{app}/builds", {"source": archive},
                           HTTP_ACCEPT="application/json")  # fmt: skip
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["build"])
    kill_at(worker, "build.push", markers)
    pushed = _blobs(registry) - before - _linked_by_others(registry, app)
    assert pushed, "the dead push left no blob to collect"

    workers.env.update({
        "PAAS_HOUSEKEEPING_INTERVAL": "10",
        "PAAS_REGISTRY_CONFIG": str(_gc_config(registry, tmp_path)),
        # The shared test cache is other sessions' too: evict nothing of it.
        "PAAS_BUILD_CACHE_MAX_BYTES": str(1 << 50),
    })  # fmt: skip
    with take_over(workers, tmp_path):
        wait_for(lambda: Build.objects.get(pk=build.pk).state == BuildState.FAILED, 120,
                 "the sweep to fail the dead build")  # fmt: skip
        try:
            wait_for(lambda: not (_blobs(registry) & pushed), 120,
                     "the dead push's blobs to be collected")  # fmt: skip
        except TimeoutError:
            left = sorted(_blobs(registry) & pushed)
            raise AssertionError(f"{len(left)} of its {len(pushed)} blobs still on disk") from None

    assert not _blobs(registry) & pushed  # no blob of it is left
    with registry.client() as images:
        assert images.list_tags(app) == []
