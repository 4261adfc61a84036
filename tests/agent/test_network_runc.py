"""A real runc container joins the network namespace HostNetwork made (by
path, as the spec says) and is reached through its published port."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runtime_agent.net.bridge import HostNetwork, write_etc_files
from runtime_agent.oci.spec import Mount
from runtime_agent.wire import PortBinding
from tests.support.processes import free_port
from tests.support.rootfs import Harness

pytestmark = pytest.mark.root

# Straight to the address: an http_proxy in the environment must not intercept.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "h")
    yield h
    h.cleanup()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[HostNetwork]:
    suffix = secrets.token_hex(3)
    subnet = IPv4Network(f"10.{secrets.choice(range(200, 256))}.{secrets.randbelow(256)}.0/24")
    hn = HostNetwork(tmp_path / "net", f"pr{suffix}", subnet, f"pr_{suffix}")
    try:
        hn.setup()
        yield hn
    finally:
        hn.teardown()


def get(url: str, deadline_s: float = 10.0) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with NO_PROXY.open(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the server inside may still be starting


def test_a_runc_container_in_its_netns_answers_on_its_published_port(
    net: HostNetwork, harness: Harness, tmp_path: Path
) -> None:
    att = net.attach("web")
    hosts, resolv = write_etc_files(tmp_path / "etc", "web", att.address)
    host_port = free_port("0.0.0.0")
    net.publish("web", att.address, [PortBinding(8000, host_port)])

    script = "echo hello from web > /tmp/index.html && exec httpd -f -p 8000 -h /tmp"
    started = harness.run(
        ["sh", "-c", script],
        netns_path=att.netns_path,
        hostname="web",
        mounts=[
            Mount("/etc/hosts", hosts, readonly=True),
            Mount("/etc/resolv.conf", resolv, readonly=True),
        ],
    )
    assert get(f"http://127.0.0.1:{host_port}/index.html") == "hello from web\n"
    assert get(f"http://{att.address}:8000/index.html") == "hello from web\n"

    code, out, _ = harness.exec(started.cid, ["cat", "/etc/hosts"])
    assert code == 0 and f"{att.address}\tweb" in out
    code, out, _ = harness.exec(started.cid, ["ip", "-4", "addr", "show", "eth0"])
    assert code == 0 and f"{att.address}/{att.prefixlen}" in out
