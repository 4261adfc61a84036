"""A real build environment for control-plane tests: a registry (token auth), a build
network and the shared stack cache, as environment variables for the Django
processes (the Celery worker) that build."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from runtime_agent.net.bridge import HostNetwork
from tests.support.agent_harness import unused_subnet
from tests.support.registry import TestRegistry, run_registry

# The stack's root filesystem is cached per machine, like a worker's: only
# the first session pays for debootstrap. Shared with tests/builds/engine.
STACK_CACHE = Path(os.environ.get("PAAS_BUILD_TEST_CACHE", "/var/cache/paas-build-test"))


@contextlib.contextmanager
def build_environment(workdir: Path, run_id: str) -> Iterator[tuple[TestRegistry, dict[str, str]]]:
    # Not one a network of the host (another test session's too) already has.
    subnet = unused_subnet()
    bridge, table = f"pw{run_id}", f"paasweb_{run_id}"
    # Token auth, like manage.py setup_registry: the worker mints its own
    # tokens with the key, agents get a pull token per create. (The realm's
    # username and password serve the tests' own clients, registry.client().)
    with run_registry(workdir / "registry", token=True) as registry:
        env = {
            "PAAS_REGISTRY": registry.host,
            "PAAS_REGISTRY_USER": registry.username or "",
            "PAAS_REGISTRY_PASSWORD": registry.password or "",
            "PAAS_REGISTRY_CA": str(registry.ca_file or ""),
            "PAAS_REGISTRY_TOKEN_KEY": str(registry.token_key),
            "PAAS_REGISTRY_TOKEN_CERT": str(registry.token_cert),
            "PAAS_BUILD_CACHE_DIR": str(STACK_CACHE),
            "PAAS_BUILD_BRIDGE": bridge,
            "PAAS_BUILD_SUBNET": str(subnet),
            "PAAS_BUILD_NFT_TABLE": table,
            "PAAS_BUILD_DIR": str(workdir / "builds"),
        }
        try:
            yield registry, env
        finally:
            # The engine set the network up on the first build; take it down.
            # (paas.builds.engine_adapter keeps its state in PAAS_BUILD_DIR/net).
            HostNetwork(workdir / "builds" / "net", bridge, subnet, table).teardown()
