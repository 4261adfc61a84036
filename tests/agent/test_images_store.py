"""The image store against a real registry: pulls verified, cached once,
garbage-collected on request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime_agent.host.errors import DigestMismatch, ImageNotSupported, NotFound, UnsafeArchive
from runtime_agent.images.layers import pack_layer
from runtime_agent.images.registry import OCI_INDEX, sha256_file
from runtime_agent.images.store import ImageStore
from tests.support.images import (
    BuiltImage,
    build_busybox_image,
    canonical_json,
    image_config,
    pack_dirs,
    push_image,
)
from tests.support.registry import TestRegistry


def make_store(root: Path, registry: TestRegistry) -> ImageStore:
    return ImageStore(
        root, registry.credentials, ca_file=str(registry.ca_file) if registry.ca_file else None
    )


def layer_snapshot(store: ImageStore) -> dict[str, tuple[int, int]]:
    """Inode and ctime of every layer dir: a re-unpack would change both."""
    out = {}
    for d in (store.root / "layers").iterdir():
        st = os.stat(d)
        out[d.name] = (st.st_ino, st.st_ctime_ns)
    return out


def test_it_pulls_an_image_and_verifies_its_digests(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    store = make_store(tmp_agent_root, registry)
    image = store.pull(busybox_image.ref)
    assert image.digest == busybox_image.digest
    assert image.layer_digests == [layer.digest for layer in busybox_image.layers]
    assert image.diff_ids == [layer.diff_id for layer in busybox_image.layers]
    assert image.config["config"]["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]
    top, base = store.lower_dirs(image)
    assert (top / "www/index.html").read_text() == busybox_image.index_body
    assert os.readlink(base / "bin/sh") == "busybox"
    assert sha256_file(base / "bin/busybox") == sha256_file(Path("/bin/busybox"))
    assert store.stats.layers_unpacked == 2
    assert list((tmp_agent_root / "tmp").iterdir()) == []


def test_a_second_pull_fetches_and_unpacks_nothing(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    store = make_store(tmp_agent_root, registry)
    store.pull(busybox_image.ref)
    before = layer_snapshot(store)
    gets_before = len(registry.blob_gets(busybox_image.repository))

    again = make_store(tmp_agent_root, registry)  # a new agent process, same root
    image = again.pull(busybox_image.ref)

    assert image.digest == busybox_image.digest
    assert len(registry.blob_gets(busybox_image.repository)) == gets_before
    assert again.stats.blobs_fetched == 0 and again.stats.layers_unpacked == 0
    assert layer_snapshot(again) == before


def test_a_pinned_pull_of_a_cached_image_makes_no_request_at_all(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    store = make_store(tmp_agent_root, registry)
    store.pull(busybox_image.ref)
    requests_before = len(registry.access_log())
    image = make_store(tmp_agent_root, registry).pull(busybox_image.pinned_ref)
    assert image.digest == busybox_image.digest
    assert len(registry.access_log()) == requests_before


def test_it_pulls_docker_schema2_images_too(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    built = build_busybox_image(registry, tmp_path, media="docker")
    image = make_store(tmp_agent_root, registry).pull(built.ref)
    assert image.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert (image.config["config"]["WorkingDir"]) == "/www"


def test_it_resolves_a_multi_platform_index_to_this_host(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    repo = busybox_image.repository
    with registry.client() as client:
        data, _, media_type = client.get_manifest(repo, "v1")
        # The same image claiming another architecture, listed first.
        foreign_config = canonical_json({**busybox_image.config, "architecture": "s390x"})
        manifest = json.loads(data)
        manifest["config"]["digest"] = client.push_blob_bytes(repo, foreign_config)
        manifest["config"]["size"] = len(foreign_config)
        foreign = canonical_json(manifest)
        foreign_digest = client.push_manifest(repo, foreign, "s390x", media_type)
        entries = [
            (foreign_digest, len(foreign), "s390x"),
            (busybox_image.digest, len(data), busybox_image.config["architecture"]),
        ]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": "linux", "architecture": arch},
                }
                for digest, size, arch in entries
            ],
        }
        index_digest = client.push_manifest(repo, canonical_json(index), "multi", OCI_INDEX)
    store = make_store(tmp_agent_root, registry)
    image = store.pull(f"{busybox_image.registry}/{repo}:multi")
    assert image.digest == busybox_image.digest
    # The index digest is remembered: pinning it needs no request.
    requests_before = len(registry.access_log())
    assert store.pull(f"{busybox_image.registry}/{repo}@{index_digest}").digest == image.digest
    assert len(registry.access_log()) == requests_before


def test_it_detects_a_corrupted_layer_and_keeps_nothing_of_it(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    built = build_busybox_image(registry, tmp_path)
    www = built.layers[1]
    data = registry.blob_data_path(www.digest)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit, same size
    data.write_bytes(bytes(raw))

    store = make_store(tmp_agent_root, registry)
    with pytest.raises(DigestMismatch) as err:
        store.pull(built.ref)
    assert err.value.data["expected"] == www.digest
    assert not store.layer_dir(www.digest).exists()
    assert list((tmp_agent_root / "tmp").iterdir()) == []


def test_it_refuses_a_layer_whose_content_differs_from_the_configs_diff_id(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_text("x")
    layers = pack_dirs(tmp_path, [tmp_path / "d"])
    config = image_config(["sha256:" + "1" * 64], cmd=["true"])
    repo = "test/lying-config"
    with registry.client() as client:
        push_image(client, repo, "v1", layers, config)
    store = make_store(tmp_agent_root, registry)
    with pytest.raises(DigestMismatch, match="image config says"):
        store.pull(f"{registry.host}/{repo}:v1")
    assert not store.layer_dir(layers[0][1].digest).exists()


def test_a_failed_unpack_leaves_no_half_layer(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    import io
    import tarfile

    # Many good files, then an escaping entry at the very end.
    blob = tmp_path / "evil.tar"
    with tarfile.open(blob, "w") as tar:
        for i in range(50):
            info = tarfile.TarInfo(f"data/file{i}")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"good"))
        info = tarfile.TarInfo("../escape")
        tar.addfile(info, io.BytesIO(b""))
    diff_id = sha256_file(blob)
    from runtime_agent.images.layers import LayerInfo

    info_ = LayerInfo(digest=diff_id, diff_id=diff_id, size=blob.stat().st_size)
    repo = "test/half-layer"
    with registry.client() as client:
        push_image(client, repo, "v1", [(blob, info_)], image_config([diff_id], cmd=["true"]))
    store = make_store(tmp_agent_root, registry)
    with pytest.raises(UnsafeArchive):
        store.pull(f"{registry.host}/{repo}:v1")
    assert list((tmp_agent_root / "layers").iterdir()) == []
    assert list((tmp_agent_root / "tmp").iterdir()) == []
    assert not (tmp_path / "escape").exists() and not (tmp_agent_root / "escape").exists()


def test_an_unknown_tag_is_reported_as_not_found(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    from runtime_agent.host.errors import ImageNotFound

    store = make_store(tmp_agent_root, registry)
    with pytest.raises(ImageNotFound):
        store.pull(f"{busybox_image.registry}/{busybox_image.repository}:nope")


def test_it_refuses_an_artifact_that_is_not_an_image(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    with registry.client() as client:
        data, _, media_type = client.get_manifest(busybox_image.repository, "v1")
        manifest = json.loads(data)
        manifest["config"]["mediaType"] = "application/vnd.example.thing+json"
        client.push_manifest(
            busybox_image.repository, canonical_json(manifest), "artifact", media_type
        )
    store = make_store(tmp_agent_root, registry)
    with pytest.raises(ImageNotSupported, match="not an image"):
        store.pull(f"{busybox_image.registry}/{busybox_image.repository}:artifact")


def test_gc_removes_unused_layers_only(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path
):
    # Another image sharing nothing but... its own layers (different bodies).
    other = build_busybox_image(registry, tmp_path, body="other image\n")
    store = make_store(tmp_agent_root, registry)
    kept = store.pull(busybox_image.ref)
    dropped = store.pull(other.ref)
    shared = set(kept.layer_digests) & set(dropped.layer_digests)
    # The busybox base layer is byte-identical in both: reproducible packing.
    assert shared == {kept.layer_digests[0]}
    (tmp_agent_root / "tmp" / "crashed-pull").mkdir()  # as a killed pull leaves it

    removed = store.gc({kept.digest})

    assert removed == [dropped.layer_digests[1]]
    assert store.lower_dirs(kept)  # all of kept's layers are still there
    with pytest.raises(NotFound):
        store.lower_dirs(dropped)
    assert store.get(dropped.digest) is None
    assert store.get(kept.digest) is not None
    assert list((tmp_agent_root / "tmp").iterdir()) == []
    # gc with nothing in use empties the store; a pull brings it back.
    assert sorted(store.gc(set())) == sorted(kept.layer_digests)
    assert list((tmp_agent_root / "layers").iterdir()) == []
    assert store.pull(busybox_image.ref).digest == kept.digest


def test_import_layer_puts_a_locally_built_layer_in_the_store(tmp_agent_root: Path, tmp_path: Path):
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app/main.py").write_text("print('hi')\n")
    info = pack_layer(src, tmp_path / "layer.tgz")
    store = ImageStore(tmp_agent_root)
    path = store.import_layer(tmp_path / "layer.tgz", info)
    assert (path / "app/main.py").read_text() == "print('hi')\n"
    assert store.gc({info.digest}) == []  # a layer digest in use keeps that layer


def test_concurrent_pulls_of_one_image_fetch_each_layer_once(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    import threading

    built = build_busybox_image(registry, tmp_path)
    stores = [make_store(tmp_agent_root, registry) for _ in range(4)]  # like 4 processes
    barrier = threading.Barrier(len(stores))
    results: list[object] = []

    def pull(store: ImageStore) -> None:
        barrier.wait()
        try:
            results.append(store.pull(built.ref).digest)
        except Exception as exc:  # surfaced by the assert below
            results.append(exc)

    threads = [threading.Thread(target=pull, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [built.digest] * len(stores)
    gets = registry.blob_gets(built.repository)
    for layer in built.layers:
        assert len([g for g in gets if layer.digest in g]) == 1, layer.digest
    assert sum(s.stats.layers_unpacked for s in stores) == len(built.layers)


def test_a_pull_without_refresh_trusts_the_last_pull_of_the_tag(
    tmp_agent_root: Path, registry: TestRegistry, busybox_image: BuiltImage
):
    store = make_store(tmp_agent_root, registry)
    first = store.pull(busybox_image.ref)
    requests_before = len(registry.access_log())
    again = make_store(tmp_agent_root, registry).pull(busybox_image.ref, refresh=False)
    assert again.digest == first.digest
    assert len(registry.access_log()) == requests_before
    # A tag never pulled here still goes to the registry.
    from runtime_agent.host.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        store.pull(f"{busybox_image.registry}/{busybox_image.repository}:unknown", refresh=False)
    # gc forgets tags of images not in use.
    store.gc(set())
    assert list((tmp_agent_root / "tags").iterdir()) == []


CHILD_PULL = """
import sys
from pathlib import Path
from runtime_agent.images.store import ImageStore
root, ref, host, user, password, ca = sys.argv[1:7]
creds = lambda h: (user, password) if h == host else None
ImageStore(Path(root), creds, ca_file=ca).pull(ref)
"""


@pytest.mark.slow
def test_a_pull_killed_mid_unpack_leaves_no_half_layer(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    import signal
    import subprocess
    import sys
    import time

    many = tmp_path / "many"
    for i in range(3000):  # slow enough to unpack that we can kill it midway
        d = many / f"d{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_text(str(i))
    layers = pack_dirs(tmp_path, [many])
    repo = "test/many-files"
    with registry.client() as client:
        push_image(client, repo, "v1", layers, image_config([layers[0][1].diff_id]))
    ref = f"{registry.host}/{repo}:v1"
    creds = [str(registry.username), str(registry.password), str(registry.ca_file)]
    args = [ref, registry.host, *creds]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_PULL, str(tmp_agent_root), *args],
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = list((tmp_agent_root / "tmp").glob("*/root/d*"))
            if len(partial) >= 3 or child.poll() is not None:
                break
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL, "the pull finished before it could be killed"
    store = make_store(tmp_agent_root, registry)
    layer_dir = store.layer_dir(layers[0][1].digest)
    assert not layer_dir.exists()  # the half-unpacked dir is in tmp/, not in layers/
    assert list((tmp_agent_root / "tmp").iterdir())

    image = store.pull(ref)  # starts over and completes
    assert (store.lower_dirs(image)[0] / "d29/f2999").read_text() == "2999"
    store.gc({image.digest})
    assert list((tmp_agent_root / "tmp").iterdir()) == []


def test_it_stops_reading_a_layer_at_the_size_the_manifest_announced(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path
):
    from runtime_agent.host.errors import RegistryError

    built = build_busybox_image(registry, tmp_path)
    with registry.client() as client:
        data, _, media_type = client.get_manifest(built.repository, "v1")
        manifest = json.loads(data)
        manifest["layers"][0]["size"] = 1000  # the real blob is about 1 MB
        client.push_manifest(built.repository, canonical_json(manifest), "short", media_type)
    store = make_store(tmp_agent_root, registry)
    with pytest.raises(RegistryError, match="over 1000 bytes"):
        store.pull(f"{built.registry}/{built.repository}:short")
    assert list((tmp_agent_root / "layers").iterdir()) == []
