"""The registry client against a real docker-registry (TLS + basic auth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_agent.host.errors import DigestMismatch, ImageNotFound, InvalidRequest, RegistryError
from runtime_agent.images.refs import ImageRef
from runtime_agent.images.registry import OCI_MANIFEST, RegistryClient, sha256_file
from tests.support.images import BuiltImage
from tests.support.registry import TestRegistry


def test_it_gets_the_manifest_with_its_digest(registry: TestRegistry, busybox_image: BuiltImage):
    with registry.client() as client:
        data, digest, media_type = client.get_manifest(busybox_image.repository, "v1")
    assert digest == busybox_image.digest
    assert media_type == OCI_MANIFEST
    assert [x["digest"] for x in json.loads(data)["layers"]] == [
        layer.digest for layer in busybox_image.layers
    ]


def test_it_fetches_blobs_and_verifies_them(
    registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path
):
    layer = busybox_image.layers[0]
    dest = tmp_path / "blob"
    with registry.client() as client:
        size = client.fetch_blob(busybox_image.repository, layer.digest, dest)
    assert size == layer.size
    assert sha256_file(dest) == layer.digest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fetch-")]


def test_it_refuses_a_wrong_password_with_a_clear_error(
    registry: TestRegistry, busybox_image: BuiltImage
):
    with registry.client(password="not-the-password") as client, pytest.raises(RegistryError) as e:
        client.get_manifest(busybox_image.repository, "v1")
    assert "refused the credentials" in e.value.message
    assert "alice" in e.value.message
    assert e.value.permanent


def test_it_reports_an_unknown_tag_as_image_not_found(
    registry: TestRegistry, busybox_image: BuiltImage
):
    with registry.client() as client, pytest.raises(ImageNotFound):
        client.get_manifest(busybox_image.repository, "no-such-tag")


def test_it_refuses_credentials_over_plain_http():
    with pytest.raises(RegistryError, match="plain http"):
        RegistryClient("127.0.0.1:1", username="alice", password="x", scheme="http")


def test_it_skips_pushing_a_blob_the_registry_has(
    registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path
):
    blob = tmp_path / "blob"
    with registry.client() as client:
        client.fetch_blob(busybox_image.repository, busybox_image.layers[1].digest, blob)
        before = len(registry.access_log())
        assert client.push_blob(busybox_image.repository, blob) == busybox_image.layers[1].digest
        new_lines = registry.access_log()[before:]
    assert [line for line in new_lines if '"HEAD ' in line]
    assert not [line for line in new_lines if '"PUT ' in line or '"POST ' in line]


def test_it_pushes_tags_lists_them_and_deletes_manifests(
    registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path
):
    # Work on a copy: the session image must stay intact for other tests.
    src, repo = busybox_image.repository, busybox_image.repository + "-copy"
    with registry.client() as client:
        data, digest, media_type = client.get_manifest(src, "v1")
        manifest = json.loads(data)
        for desc in [manifest["config"], *manifest["layers"]]:
            blob = tmp_path / desc["digest"]
            client.fetch_blob(src, desc["digest"], blob)
            assert client.push_blob(repo, blob) == desc["digest"]
        assert client.push_manifest(repo, data, "v1", media_type) == digest
        assert client.push_manifest(repo, data, "v2", media_type) == digest
        assert client.list_tags(repo) == ["v1", "v2"]
        assert client.list_tags("test/never-pushed") == []
        client.delete_manifest(repo, digest)
        assert client.list_tags(repo) == []
        with pytest.raises(ImageNotFound):
            client.get_manifest(repo, digest)
        assert client.get_manifest(src, "v1")[1] == digest


def test_it_detects_a_corrupted_blob_in_the_registry(registry: TestRegistry, tmp_path: Path):
    from tests.support.images import build_busybox_image

    image = build_busybox_image(registry, tmp_path / "img")
    www = image.layers[1]
    data_path = registry.blob_data_path(www.digest)
    raw = bytearray(data_path.read_bytes())
    raw[-9] ^= 0xFF  # inside the gzip trailer's CRC: same size, other bytes
    data_path.write_bytes(bytes(raw))
    with registry.client() as client, pytest.raises(DigestMismatch):
        client.fetch_blob(image.repository, www.digest, tmp_path / "blob")
    assert not (tmp_path / "blob").exists()


def test_it_parses_image_references():
    ref = ImageRef.parse("127.0.0.1:5000/apps/web:v2")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "apps/web",
        "v2",
        None,
    )
    pinned = ImageRef.parse("registry.local/app@sha256:" + "a" * 64)
    assert pinned.reference == "sha256:" + "a" * 64
    assert ImageRef.parse("localhost/app").tag == "latest"
    for bad in ("app:v1", "127.0.0.1:5000/App", "127.0.0.1:5000/app@sha256:zz", "h.x/a:-bad"):
        with pytest.raises(InvalidRequest):
            ImageRef.parse(bad)


def test_it_authenticates_with_bearer_tokens(tmp_path: Path, busybox_image: BuiltImage):
    from tests.support.images import build_busybox_image
    from tests.support.registry import run_registry

    with run_registry(tmp_path / "reg", token=True) as reg:
        image = build_busybox_image(reg, tmp_path / "img")  # pushes need a push scope
        with reg.client() as client:
            _, digest, _ = client.get_manifest(image.repository, "v1")
        with reg.client(password="wrong") as client, pytest.raises(RegistryError, match="refused"):
            client.get_manifest(image.repository, "v1")
        granted = reg.tokens_issued or []
    assert digest == image.digest
    # Scopes are "repository:NAME:ACTIONS"; the order of the actions varies.
    actions = [set(scope.rsplit(":", 1)[1].split(",")) for scope in granted]
    assert {"pull", "push"} in actions
    assert {"pull"} in actions


def test_it_mounts_a_blob_from_another_repository_without_uploading(
    registry: TestRegistry, busybox_image: BuiltImage
):
    target = busybox_image.repository + "-mounted"
    layer = busybox_image.layers[0].digest
    with registry.client() as client:
        assert not client.has_blob(target, layer)
        assert client.mount_blob(target, layer, busybox_image.repository)
        assert client.has_blob(target, layer)
        missing = "sha256:" + "e" * 64
        assert not client.mount_blob(target, missing, busybox_image.repository)
    assert not [line for line in registry.access_log() if f'"PUT /v2/{target}/blobs' in line]
