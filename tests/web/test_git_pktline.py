"""pkt-lines and side-band as git frames them: what a push request's
commands look like, packets that fit the client's side-band size, and a
status report with the deploy branch turned from ok to ng."""

from __future__ import annotations

import io

import pytest

from paas.gitdeploy import pktline


def test_a_push_request_s_commands_and_capabilities_are_read_and_the_pack_left() -> None:
    old, new = "0" * 40, "a" * 40
    first = pktline.encode(f"{old} {new} refs/heads/main\0report-status side-band-64k\n".encode())
    second = pktline.encode(f"{new} {old} refs/heads/gone\n".encode())
    stream = io.BytesIO(first + second + pktline.FLUSH + b"PACK...")
    push = pktline.read_push_commands(stream)
    assert [c.ref for c in push.commands] == ["refs/heads/main", "refs/heads/gone"]
    assert push.capabilities == {"report-status", "side-band-64k"}
    assert stream.read() == b"PACK..."


def test_a_truncated_request_is_an_error() -> None:
    with pytest.raises(pktline.PktError):
        pktline.read_push_commands(io.BytesIO(b"00ffshort"))


@pytest.mark.parametrize(("caps", "biggest"), [({"side-band-64k"}, 65520), ({"side-band"}, 1000)])
def test_side_band_packets_fit_the_client(caps: set[str], biggest: int) -> None:
    limit = pktline.sideband_limit(caps)
    packets = list(pktline.sideband(2, b"x" * 200_000, limit))
    sizes = [int(p[:4], 16) for p in packets]
    assert max(sizes) <= biggest and sum(s - 5 for s in sizes) == 200_000
    assert pktline.sideband_limit(set()) == 0


def test_a_failed_deploy_turns_its_branch_to_ng_and_drops_its_options() -> None:
    report = ["unpack ok", "ok refs/heads/main", "option refname refs/heads/main",
              "ok refs/heads/feature"]  # fmt: skip
    assert pktline.report_reject(report, "refs/heads/main", "build failed") == [
        "unpack ok", "ng refs/heads/main build failed", "ok refs/heads/feature",
    ]  # fmt: skip
    encoded = pktline.report_encode(report)
    assert pktline.report_lines(encoded) == report
