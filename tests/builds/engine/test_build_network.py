"""What a build step's network reaches, probed from a real RUN step (runc,
the build bridge, its nftables policy): the outside world and the
allow-listed package index on the host; not the host's other ports or
addresses, link-local, or the private networks around the host; and no
IPv6 at all (off in the step's namespace and on the build bridge).

"Other hosts" are network namespaces this test makes
(tests/support/other_hosts.py); nothing else is ever contacted.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from tests.support.other_hosts import PORT, Hosts, OtherHost, host_listener, slash30

pytestmark = pytest.mark.root

PROBE = """\
import socket, sys
print("PROBE ipv6-off", open("/proc/sys/net/ipv6/conf/all/disable_ipv6").read().strip())
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as c:
            c.settimeout(3)
            answer = c.recv(64).decode().split()
            print("PROBE", target, answer[0] if answer else "open")
    except OSError as exc:
        print("PROBE", target, type(exc).__name__)
"""


@pytest.fixture
def others() -> Iterator[dict[str, OtherHost]]:
    hosts = Hosts(f"bn{secrets.token_hex(3)}")
    try:
        yield {
            "outside": hosts.add("outside", slash30("198.51.100.0/24")),
            "link_local": hosts.add("linklocal", slash30("169.254.0.0/16")),
            "private": hosts.add("private", slash30("172.16.0.0/12")),
        }
    finally:
        hosts.cleanup()


def test_a_build_step_reaches_the_outside_and_the_allowed_index_and_nothing_local(
    engine_config, build_network, package_index, others, tmp_path: Path
) -> None:
    _, net = build_network
    assert (Path("/proc/sys/net/ipv6/conf") / net.bridge / "disable_ipv6").read_text() == "1\n"
    gateway = str(net.gateway)
    elsewhere, host_port = host_listener(others["outside"].via)  # another host address
    on_gateway, gateway_port = host_listener(gateway)  # allow-listed (the tests' index)
    targets = {
        "outside": f"{others['outside'].address}:{PORT}",
        "index": f"{gateway}:{gateway_port}",
        "host": f"{others['outside'].via}:{host_port}",
        "link_local": f"{others['link_local'].address}:{PORT}",
        "private": f"{others['private'].address}:{PORT}",
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "probe.py").write_text(PROBE)
    (src / "Dockerfile").write_text(
        f"FROM stack\nCOPY probe.py /probe.py\nRUN python3 /probe.py {' '.join(targets.values())}\n"
    )
    lines: list[str] = []
    try:
        build_image(
            source_dir=src, app="netprobe", build_id=secrets.token_hex(4), version=1,
            config=engine_config, log=lines.append,
        )  # fmt: skip
    finally:
        elsewhere.close()
        on_gateway.close()
    probes = [line.split() for line in lines if "PROBE " in line]
    seen = {words[-2]: words[-1] for words in probes}
    assert seen.pop("ipv6-off") == "1", lines
    got = {name: seen.get(target) for name, target in targets.items()}
    assert got == {
        "outside": "outside",
        "index": "host",
        "host": "ConnectionRefusedError",
        "link_local": "ConnectionRefusedError",
        "private": "ConnectionRefusedError",
    }, lines
