"""The disk never fills: the build cache is evicted least recently used
first down to a budget (never an entry a running build may use, and a
rebuild after eviction still works), and the registry's garbage collection
frees the blobs of deleted image versions, measured on disk."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.housekeeping import (
    cache_entries,
    evict_cache,
    evict_entries,
    gc_needed,
    registry_push_lock,
    tree_size,
)
from paas.builds.registry_server import registry_garbage_collect
from runtime_agent.host.errors import ImageNotFound


def dockerfile_app(root: Path, n: int) -> Path:
    src = root / f"src-{n}"
    src.mkdir(parents=True)
    (src / "Dockerfile").write_text(
        f'FROM stack\nRUN echo entry-{n} && head -c 300000 /dev/urandom > /blob\nCMD ["true"]\n'
    )
    return src


def build(config, src, app, version, lines=None):
    return build_image(
        source_dir=src, app=app, build_id=f"b{version}", version=version, config=config,
        log=(lines if lines is not None else []).append,
    )  # fmt: skip


def layer_dirs(cache: Path) -> dict[str, Path]:
    """The cache's layer entries by key, wherever they live (the cache dir
    or a team's under teams/)."""
    return {
        e.path.name: e.path
        for e in cache_entries(cache)
        if e.kind == "layer" and not e.path.name.startswith(".")
    }


def layer_keys(cache: Path) -> set[str]:
    return set(layer_dirs(cache))


@pytest.mark.root
def test_the_oldest_entries_go_the_newest_stay_and_a_rebuild_still_works(engine_config, tmp_path):
    cache = tmp_path / "cache"
    config = replace(engine_config, cache_dir=cache)
    app = f"evict-{uuid.uuid4().hex[:6]}"
    keys: list[str] = []
    for n in range(3):
        before = layer_keys(cache)
        build(config, dockerfile_app(tmp_path, n), app, n + 1)
        (new,) = layer_keys(cache) - before
        keys.append(new)
    now = time.time()
    for age, key in zip((3000, 2000, 1000), keys, strict=True):  # keys[0] used longest ago
        os.utime(layer_dirs(cache)[key], (now - age, now - age))
    sizes = {key: tree_size(layer_dirs(cache)[key]) for key in keys}
    budget = sizes[keys[1]] + sizes[keys[2]] + 1024

    report = evict_cache(cache, budget_bytes=budget, min_age_s=600, now=now)
    assert [e.path.name for e in report.removed] == [keys[0]]
    assert layer_keys(cache) == {keys[1], keys[2]}
    assert report.after_bytes <= budget

    # The evicted step runs again; the kept one is still a cache hit
    # (another app: the same app would reuse its identical image).
    lines: list[str] = []
    again = build(config, dockerfile_app(tmp_path / "again", 0), f"{app}-2", 1, lines)
    assert again.steps[0].cached is False
    assert "entry-0" in "\n".join(lines)
    kept = build(config, dockerfile_app(tmp_path / "kept", 2), f"{app}-2", 2)
    assert kept.steps[0].cached is True


@pytest.mark.root
def test_an_entry_used_recently_is_never_evicted_even_over_budget(engine_config, tmp_path):
    cache = tmp_path / "cache"
    config = replace(engine_config, cache_dir=cache)
    build(config, dockerfile_app(tmp_path, 7), f"evict-{uuid.uuid4().hex[:6]}", 1)
    (key,) = layer_keys(cache)
    report = evict_cache(cache, budget_bytes=0, min_age_s=600)
    assert report.removed == []
    assert report.in_use_bytes > 0
    assert layer_keys(cache) == {key}


def test_download_cache_files_go_oldest_first(tmp_path):
    pip = tmp_path / "downloads" / "pip" / "http" / "a"
    pip.mkdir(parents=True)
    now = time.time()
    for name, age in (("old", 5000), ("mid", 4000), ("new", 3000)):
        (pip / name).write_bytes(os.urandom(64 * 1024))
        os.utime(pip / name, (now - age, now - age))
    sizes = sum(e.size for e in cache_entries(tmp_path))
    report = evict_cache(tmp_path, budget_bytes=sizes - 1, min_age_s=600, now=now)
    assert [e.path.name for e in report.removed] == ["old"]
    assert sorted(p.name for p in pip.iterdir()) == ["mid", "new"]


def test_every_teams_cache_counts_against_one_budget(tmp_path):
    now = time.time()
    old_layer = tmp_path / "teams" / "alice" / "layers" / ("a" * 64)
    new_file = tmp_path / "teams" / "bob" / "downloads" / "npm" / "content" / "x"
    for path, age in ((old_layer / "layer.tar.gz", 9000), (new_file, 8000)):
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(64 * 1024))
        os.utime(path, (now - age, now - age))
    os.utime(old_layer, (now - 9000, now - 9000))
    report = evict_cache(tmp_path, budget_bytes=100 * 1024, min_age_s=600, now=now)
    assert [e.path for e in report.removed] == [old_layer]
    assert not old_layer.exists() and new_file.exists()


def blobs_on_disk(registry) -> int:
    return tree_size(registry.storage_dir / "docker" / "registry" / "v2" / "blobs")


def app_layers(config, app, result) -> list[tuple[str, int]]:
    """(digest, size) of the image's layers above the stack."""
    with config.registry.client() as client:
        manifest = json.loads(client.get_manifest(app, result.digest)[0])
    return [(d["digest"], int(d["size"])) for d in manifest["layers"][1:]]


@pytest.mark.root
def test_registry_gc_frees_the_blobs_of_deleted_versions(engine_config, sample, registry, tmp_path):
    config = replace(engine_config, keep_images=1, cache_dir=tmp_path / "cache")
    app = f"gc-{uuid.uuid4().hex[:6]}"
    src = sample("static")
    layers = []
    for version in (1, 2, 3):
        (src / "public" / "big.bin").write_bytes(os.urandom(1 << 20))  # 1 MiB, incompressible
        result = build(config, src, app, version)
        layers.append(app_layers(config, app, result))  # before the next build prunes it
    assert gc_needed(config.cache_dir)  # pruning deleted v1 and v2
    with config.registry.client() as client:
        for tag in ("v1", "v2"):
            with pytest.raises(ImageNotFound):
                client.get_manifest(app, tag)
    old = [digest for digest, _size in layers[0] + layers[1]]
    assert all(registry.blob_data_path(d).exists() for d in old)  # deleting freed nothing
    before = blobs_on_disk(registry)

    config_file = registry.storage_dir.parent / "config.yml"
    with registry_push_lock(config.cache_dir, exclusive=True):
        gc = registry_garbage_collect(config_file)
    after = blobs_on_disk(registry)

    assert gc.blobs_deleted >= 2
    assert not any(registry.blob_data_path(d).exists() for d in old)
    assert before - after >= 2 * (1 << 20)
    with config.registry.client() as client:  # the kept version is whole
        for digest, size in layers[2]:
            dest = tmp_path / digest.replace(":", "-")
            client.fetch_blob(app, digest, dest)
            assert dest.stat().st_size == size


def _host_and_cache(tmp_path: Path, now: float) -> tuple[Path, Path, Path]:
    """A host directory and a download cache directory holding files of the
    same names, all long unused."""
    host, cache = tmp_path / "host", tmp_path / "cache"
    real = cache / "downloads" / "pip" / "http" / "a"
    (host / "empty").mkdir(parents=True)
    real.mkdir(parents=True)
    for where in (real, host):
        for name in ("f1", "f2"):
            (where / name).write_bytes(b"x" * 8192)
            os.utime(where / name, (now - 5000, now - 5000))
    return host, cache, real


def test_a_download_cache_dir_swapped_for_a_link_after_listing_leaves_the_host_alone(tmp_path):
    # The download cache is a tenant's: its build steps write it (a bind
    # mount), maybe while the worker evicts. A step swaps a directory the
    # eviction listed for a link to the host, whose files have the same
    # names: removing them by path would remove the host's (it did).
    now = time.time()
    host, cache, real = _host_and_cache(tmp_path, now)
    entries = cache_entries(cache)
    assert {e.path.name for e in entries} == {"f1", "f2"}
    real.rename(real.with_name("a.moved"))
    real.symlink_to(host)
    report = evict_entries(entries, budget_bytes=0, min_age_s=600, now=now)
    assert len(report.removed) == 2  # counted as gone: they are not in the cache any more
    assert sorted(p.name for p in host.iterdir()) == ["empty", "f1", "f2"]
    assert sorted(p.name for p in real.with_name("a.moved").iterdir()) == ["f1", "f2"]


def test_a_link_in_a_download_cache_is_neither_walked_nor_pruned(tmp_path):
    now = time.time()
    host, cache, real = _host_and_cache(tmp_path, now)
    (real.parent / "to-host").symlink_to(host)
    (real.parent / "to-empty").symlink_to(host / "empty")
    report = evict_cache(cache, budget_bytes=0, min_age_s=600, now=now)
    assert {e.path.parent for e in report.removed} == {real}
    assert sorted(p.name for p in host.iterdir()) == ["empty", "f1", "f2"]
    assert (real.parent / "to-host").is_symlink() and (real.parent / "to-empty").is_symlink()
    assert not real.exists()  # emptied, then pruned


def lock_waiters(lock_file: Path) -> int:
    """Processes or threads blocked in flock() on ``lock_file`` (the
    kernel's /proc/locks lists a waiter with '->')."""
    inode = lock_file.stat().st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and f":{inode} " in line)


@pytest.mark.root
def test_the_registry_gc_waits_for_a_push_in_flight(engine_config, sample, registry, tmp_path,
                                                     settings):  # fmt: skip
    """The build stops with its layer blobs uploaded and its manifest not yet
    (unreferenced blobs, which a collection would delete); the housekeeping's
    collection started then waits on the push lock, runs once the push is
    done, and the pushed image is whole while the old version's blobs go."""
    from paas.builds.engine.housekeeping import REGISTRY_LOCK
    from paas.builds.housekeeping import registry_collect_garbage
    from paas.builds.registry_server import GarbageCollection

    locks = tmp_path / "locks"
    config = replace(engine_config, keep_images=1, cache_dir=tmp_path / "cache",
                     registry_lock_dir=locks)  # fmt: skip
    settings.PAAS_BUILD_CACHE_DIR = locks
    settings.PAAS_REGISTRY_CONFIG = str(registry.storage_dir.parent / "config.yml")
    app = f"gcwait-{uuid.uuid4().hex[:6]}"
    src = sample("static")
    (src / "public" / "big.bin").write_bytes(os.urandom(1 << 20))
    old = app_layers(config, app, build(config, src, app, 1))

    (src / "public" / "big.bin").write_bytes(os.urandom(1 << 20))
    blobs_pushed, resume = threading.Event(), threading.Event()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("layer ") and "pushed (1" in line:  # the 1 MiB layer's blob
            blobs_pushed.set()
            assert resume.wait(300)

    pushed: list = []
    push = threading.Thread(
        target=lambda: pushed.append(
            build_image(source_dir=src, app=app, build_id="b2", version=2, config=config, log=log)
        )
    )
    push.start()
    gc: list = []
    collect = threading.Thread(target=lambda: gc.append(registry_collect_garbage(force=True)))
    try:
        assert blobs_pushed.wait(300), "\n".join(lines)
        collect.start()
        deadline = time.monotonic() + 60
        while lock_waiters(locks / REGISTRY_LOCK) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock_waiters(locks / REGISTRY_LOCK) == 1  # the collection, held off
        assert collect.is_alive() and not gc
    finally:
        resume.set()
        push.join(300)
        collect.join(300)

    (result,) = pushed
    (collection,) = gc
    assert isinstance(collection, GarbageCollection), collection
    assert collection.blobs_deleted >= 1
    assert not any(registry.blob_data_path(d).exists() for d, _size in old)
    with config.registry.client() as client:  # the image pushed meanwhile is whole
        for digest, size in app_layers(config, app, result):
            dest = tmp_path / digest.replace(":", "-")
            client.fetch_blob(app, digest, dest)
            assert dest.stat().st_size == size
