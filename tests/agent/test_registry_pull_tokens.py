"""Scoped pulls: a token the control plane mints for one repository reads
that repository of the REAL registry (``auth: token`` mode) and nothing else,
both through the registry client and through the agent's image store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paas.builds.registry_tokens import Access, pull_access
from runtime_agent.host.errors import InvalidRequest, RegistryError
from runtime_agent.images.registry import RegistryClient
from runtime_agent.images.store import ImageStore
from runtime_agent.wire import RegistryAuth
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry, run_registry


@dataclass
class TwoApps:
    registry: TestRegistry
    a: BuiltImage
    b: BuiltImage

    def token(self, access: list[Access], ttl_s: int = 120) -> str:
        return self.registry.signer().mint(access, subject="agent:test", ttl_s=ttl_s)

    def client(self, token: str) -> RegistryClient:
        return RegistryClient(self.registry.host, token=token, ca_file=str(self.registry.ca_file))


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoApps]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with run_registry(workdir / "reg", token=True) as reg:
        a = build_busybox_image(reg, workdir / "a", repository="app-a")
        b = build_busybox_image(reg, workdir / "b", repository="app-b")
        yield TwoApps(reg, a, b)


def test_a_pull_token_reads_its_repository(two_apps: TwoApps, tmp_path: Path):
    with two_apps.client(two_apps.token(pull_access("app-a"))) as client:
        data, digest, _ = client.get_manifest("app-a", "v1")
        size = client.fetch_blob("app-a", two_apps.a.layers[0].digest, tmp_path / "layer")
    assert digest == two_apps.a.digest
    assert size > 0


def test_a_pull_token_is_refused_for_another_repository(two_apps: TwoApps):
    with two_apps.client(two_apps.token(pull_access("app-a"))) as client:
        with pytest.raises(RegistryError, match="refused"):
            client.get_manifest("app-b", "v1")
        # Not even a blob both images share (the busybox base layer) by way of B.
        with pytest.raises(RegistryError, match="refused"):
            client.has_blob("app-b", two_apps.b.layers[0].digest)


def test_a_pull_token_cannot_push(two_apps: TwoApps, tmp_path: Path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"not allowed")
    token = two_apps.token(pull_access("app-a"))
    with two_apps.client(token) as client, pytest.raises(RegistryError, match="refused"):
        client.push_blob("app-a", blob)


def test_an_expired_token_is_refused(two_apps: TwoApps):
    token = two_apps.token(pull_access("app-a"), ttl_s=-60)
    with two_apps.client(token) as client, pytest.raises(RegistryError, match="refused"):
        client.get_manifest("app-a", "v1")


def test_a_token_from_another_key_is_refused(two_apps: TwoApps, tmp_path: Path):
    with run_registry(tmp_path / "other", token=True) as other:
        forged = other.signer().mint(pull_access("app-a"), subject="x", ttl_s=60)
    with two_apps.client(forged) as client, pytest.raises(RegistryError, match="refused"):
        client.get_manifest("app-a", "v1")


def test_the_store_pulls_with_a_token_and_holds_no_credential(two_apps: TwoApps, tmp_path: Path):
    store = ImageStore(tmp_path / "store", ca_file=str(two_apps.registry.ca_file))
    try:
        auth = RegistryAuth(two_apps.registry.host, token=two_apps.token(pull_access("app-a")))
        image = store.pull(two_apps.a.ref, refresh=False, auth=auth)
        assert image.digest == two_apps.a.digest
        with pytest.raises(RegistryError, match="refused"):
            store.pull(two_apps.b.ref, refresh=False, auth=auth)
        # Without a credential the store has none of its own to fall back on.
        with pytest.raises(RegistryError):
            store.pull(two_apps.b.ref, refresh=True)
    finally:
        store.close()


def test_an_image_on_the_host_is_not_handed_to_a_token_for_another_repository(
    two_apps: TwoApps, tmp_path: Path
):
    """A's image is in the store; a create that names it with B's token must
    still fail: the registry, not the cache, decides who may read it."""
    store = ImageStore(tmp_path / "store", ca_file=str(two_apps.registry.ca_file))
    try:
        host = two_apps.registry.host
        a_auth = RegistryAuth(host, token=two_apps.token(pull_access("app-a")))
        store.pull(two_apps.a.ref, refresh=False, auth=a_auth)
        b_auth = RegistryAuth(host, token=two_apps.token(pull_access("app-b")))
        with pytest.raises(RegistryError, match="refused"):
            store.pull(two_apps.a.ref, refresh=False, auth=b_auth)
    finally:
        store.close()


def test_a_credential_is_sent_to_its_own_registry_only(two_apps: TwoApps, tmp_path: Path):
    store = ImageStore(tmp_path / "store", ca_file=str(two_apps.registry.ca_file))
    try:
        auth = RegistryAuth("elsewhere.example:5000", token="x.y.z")
        with pytest.raises(InvalidRequest, match="registry_auth is for elsewhere"):
            store.pull(two_apps.a.ref, auth=auth)
    finally:
        store.close()
