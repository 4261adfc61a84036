"""The caps on unpacking a layer (images/layers.py UnpackLimits), with
crafted tars: each refused with a clear error before the damage is done."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from runtime_agent.host.errors import UnsafeArchive
from runtime_agent.images.layers import UnpackLimits, unpack_layer

MiB = 1024 * 1024


def write_tar(path: Path, files: list[tuple[str, bytes]], *, gz: bool = True, pax=None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


def written(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def test_a_layer_within_every_cap_unpacks(tmp_path: Path, dest: Path) -> None:
    tar = write_tar(tmp_path / "ok.tar.gz", [("a", b"x" * 1000), ("b", os.urandom(1000))])
    unpack_layer(tar, dest, limits=UnpackLimits(max_bytes=2000, max_entries=2))
    assert written(dest) == ["a", "b"]


def test_an_entry_over_the_per_entry_cap_is_refused_before_it_is_written(
    tmp_path: Path, dest: Path
) -> None:
    tar = write_tar(tmp_path / "big.tar.gz", [("small", b"s"), ("big", b"b" * 5000)])
    with pytest.raises(UnsafeArchive, match="'big' is 5000 bytes, over the 4096-byte limit"):
        unpack_layer(tar, dest, limits=UnpackLimits(max_entry_bytes=4096))
    assert written(dest) == ["small"]  # nothing of "big", not even a truncated file


def test_a_layer_over_the_total_cap_is_refused_before_the_entry_that_crosses_it(
    tmp_path: Path, dest: Path
) -> None:
    tar = write_tar(tmp_path / "t.tar.gz", [(f"f{i}", b"y" * 3000) for i in range(4)])
    with pytest.raises(UnsafeArchive, match="more than 10000 bytes"):
        unpack_layer(tar, dest, limits=UnpackLimits(max_bytes=10000))
    assert written(dest) == ["f0", "f1", "f2"]


def test_too_many_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    tar = write_tar(tmp_path / "n.tar.gz", [(f"e{i}", b"") for i in range(11)])
    with pytest.raises(UnsafeArchive, match="more than 10 entries"):
        unpack_layer(tar, dest, limits=UnpackLimits(max_entries=10))
    assert len(written(dest)) == 10


def test_an_oversized_pax_header_is_refused_before_it_is_read(tmp_path: Path, dest: Path) -> None:
    tar = write_tar(tmp_path / "h.tar.gz", [("f", b"z")], pax={"comment": "c" * 200_000})
    with pytest.raises(UnsafeArchive, match="tar header of .* bytes is over the 65536-byte limit"):
        unpack_layer(tar, dest, limits=UnpackLimits(max_header_bytes=65536))
    assert written(dest) == []


def test_a_compression_bomb_stops_at_the_ratio_cap(tmp_path: Path, dest: Path) -> None:
    # 64 MiB of zeros gzip to ~64 KiB (ratio ~1000): stopped long before the end.
    bomb = write_tar(tmp_path / "bomb.tar.gz", [("zeros", bytes(64 * MiB))])
    assert bomb.stat().st_size < MiB
    with pytest.raises(UnsafeArchive, match="inflates more than 100 times"):
        unpack_layer(bomb, dest, limits=UnpackLimits(max_ratio=100, ratio_grace_bytes=MiB))
    zeros = dest / "zeros"
    assert not zeros.exists() or zeros.stat().st_size < 64 * MiB


def test_an_uncompressed_layer_has_no_ratio_to_check(tmp_path: Path, dest: Path) -> None:
    tar = write_tar(tmp_path / "plain.tar", [("zeros", bytes(2 * MiB))], gz=False)
    unpack_layer(tar, dest, limits=UnpackLimits(max_ratio=2, ratio_grace_bytes=1024))
    assert (dest / "zeros").stat().st_size == 2 * MiB
