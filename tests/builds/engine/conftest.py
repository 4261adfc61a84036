"""Fixtures for the build engine's root tests: one registry, one published
stack and one build network per test session (they are the slow parts).

The stack's root filesystem and layer are cached across sessions under
PAAS_BUILD_TEST_CACHE (default /var/cache/paas-build-test), like a worker's
stack cache: the first session on a machine pays for debootstrap (about a
minute), later ones only push the stack to their fresh registry."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from paas.builds.engine.config import (
    BuildConfig,
    BuildLimits,
    BuildNetwork,
    HostTrust,
    RegistrySettings,
)
from paas.builds.engine.stack import StackSpec, publish_stack, stack_dir
from runtime_agent.images.store import ImageStore
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.net.policy import PolicySettings
from tests.builds.engine.support import make_wheel, remove_cgroup_dirs, serve_index
from tests.support.agent_harness import unused_subnet
from tests.support.registry import TestRegistry, run_registry

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
STACK_CACHE = Path(os.environ.get("PAAS_BUILD_TEST_CACHE", "/var/cache/paas-build-test"))
# The host's CA bundle, mounted into build steps as the platform does
# (PAAS_BUILD_CA_BUNDLE's default).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: starts a real dockerd (docker interop)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root_items = [i for i in items if "root" in i.keywords and "builds/engine" in str(i.path)]
    if not (stack_dir(StackSpec(), STACK_CACHE) / "layer.json").exists():
        # No stack on this machine yet: the first test's setup makes it
        # (debootstrap + apt + packing, several minutes on 2 cores).
        for item in root_items:
            item.add_marker(pytest.mark.timeout(1800))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestRegistry]:
    with run_registry(tmp_path_factory.mktemp("build-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_settings(registry: TestRegistry) -> RegistrySettings:
    return RegistrySettings(
        host=registry.host,
        username=registry.username,
        password=registry.password,
        scheme=registry.scheme,
        ca_file=str(registry.ca_file) if registry.ca_file else None,
    )


@pytest.fixture(scope="session")
def stack_ref(registry_settings: RegistrySettings) -> str:
    with registry_settings.client() as client:
        return publish_stack(StackSpec(), STACK_CACHE, client, print)


@pytest.fixture(scope="session")
def build_network(
    tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[tuple[BuildNetwork, HostNetwork]]:
    subnet = unused_subnet()  # none of the host's networks (other sessions' too)
    settings = BuildNetwork(
        state_dir=tmp_path_factory.mktemp("build-net"),
        bridge=f"pb{run_id}",
        subnet=subnet,
        nft_table=f"paasbuild_{run_id}",
        # The tests' package index listens on the gateway, a host address
        # the policy refuses unless allowed, as an operator's would be.
        allowed=(IPv4Network(f"{subnet.network_address + 1}/32"),),
    )
    net = HostNetwork(
        settings.state_dir, settings.bridge, settings.subnet, settings.nft_table,
        policy=PolicySettings(allowed=settings.allowed),
    )  # fmt: skip
    net.setup()
    try:
        yield settings, net
    finally:
        net.teardown()


@pytest.fixture(scope="session")
def image_store_dir() -> Iterator[Path]:
    """Content-addressed and locked: sharing it across sessions saves
    unpacking the stack (20 s) each time. At the end, app images pulled more
    than an hour ago (by earlier sessions) are dropped, so the store stays
    small without touching a session running beside this one."""
    path = STACK_CACHE / "image-store"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    store = ImageStore(path)
    try:
        cutoff = time.time() - 3600
        keep = {
            image.digest
            for image in store.images()
            if "stack.key" in (image.config.get("config", {}).get("Labels") or {})
            or (path / "images" / f"{image.digest[7:]}.json").stat().st_mtime > cutoff
        }
        store.gc(keep)
    finally:
        store.close()


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dependency layers and download caches, fresh for every session so
    the first build of a session really runs pip."""
    return tmp_path_factory.mktemp("build-cache")


@pytest.fixture(scope="session")
def package_index(
    tmp_path_factory: pytest.TempPathFactory, build_network: tuple[BuildNetwork, HostNetwork]
) -> Iterator:
    wheels = tmp_path_factory.mktemp("wheels")
    wheel = make_wheel(wheels, "tinydep", "1.0", 'GREETING = "hello from tinydep"\n')
    with serve_index(str(build_network[1].gateway), [wheel]) as index:
        yield index


@pytest.fixture(scope="session")
def cgroup_parent(run_id: str) -> Iterator[str]:
    """Build steps' cgroups live under this parent; removed at the end."""
    name = f"paas-build-test-{run_id}"
    yield name
    remove_cgroup_dirs(name)


@pytest.fixture
def engine_config(
    cgroup_parent: str,
    tmp_path: Path,
    registry_settings: RegistrySettings,
    stack_ref: str,
    build_network: tuple[BuildNetwork, HostNetwork],
    image_store_dir: Path,
    session_cache: Path,
    package_index,
) -> BuildConfig:
    return BuildConfig(
        registry=registry_settings,
        stack_ref=stack_ref,
        cache_dir=session_cache,
        work_dir=tmp_path / "work",
        runc_root=tmp_path / "runc",
        network=build_network[0],
        limits=BuildLimits(memory_bytes=1 << 30, cpus=1.0, pids=512, wall_time_s=300),
        pip_index_url=package_index.url,
        npm_registry_url=f"http://{build_network[1].gateway}:9/",  # nothing there: no internet
        keep_images=10,
        image_store_dir=image_store_dir,
        cgroup_parent=cgroup_parent,
        trust=HostTrust(ca_bundle=HOST_CA_BUNDLE),
    )


@pytest.fixture
def image_store(image_store_dir: Path, registry_settings: RegistrySettings) -> Iterator[ImageStore]:
    creds = (registry_settings.username or "", registry_settings.password or "")
    store = ImageStore(image_store_dir, lambda host: creds, ca_file=registry_settings.ca_file)
    yield store
    store.close()


@pytest.fixture
def sample(tmp_path: Path):
    """A copy of a sample app that the test may edit."""

    def copy(name: str) -> Path:
        dest = tmp_path / "src" / name
        shutil.copytree(SAMPLES / name, dest)
        return dest

    return copy
