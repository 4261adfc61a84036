"""Unpacking untrusted layer tars: every way out of the layer dir is refused,
and OCI whiteouts become overlayfs whiteouts."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from runtime_agent.host.errors import UnsafeArchive
from runtime_agent.images.layers import OPAQUE_XATTR, unpack_layer


def make_tar(path: Path, entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info, data = entry
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(entry)
    return path


def file_entry(
    name: str, data: bytes = b"data\n", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def dir_entry(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def link_entry(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture
def sandbox(tmp_path: Path):
    """``dest`` to unpack into, next to ``outside`` which must stay empty."""
    dest, outside = tmp_path / "box" / "dest", tmp_path / "box" / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    return dest, outside


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_it_refuses_a_name_climbing_out_with_dotdot(sandbox, tmp_path):
    dest, outside = sandbox
    tar = make_tar(tmp_path / "l.tgz", [file_entry("etc/../../outside/evil")])
    with pytest.raises(UnsafeArchive, match="outside"):
        unpack_layer(tar, dest)
    assert everything_under(outside) == []


def test_it_refuses_an_absolute_name(sandbox, tmp_path):
    dest, outside = sandbox
    target = outside / "evil"
    tar = make_tar(tmp_path / "l.tgz", [file_entry(str(target))])
    with pytest.raises(UnsafeArchive, match="absolute"):
        unpack_layer(tar, dest)
    assert not target.exists()
    assert everything_under(outside) == []


def test_it_refuses_a_symlink_pointing_out_of_the_layer(sandbox, tmp_path):
    dest, outside = sandbox
    tar = make_tar(tmp_path / "l.tgz", [link_entry("etc/escape", "../../outside")])
    with pytest.raises(UnsafeArchive, match="points outside"):
        unpack_layer(tar, dest)
    assert not os.path.lexists(dest / "etc/escape")
    assert everything_under(outside) == []


def test_it_refuses_to_write_through_a_planted_absolute_symlink(sandbox, tmp_path):
    # An absolute target is legitimate in an image (it means the container's
    # own root), but the unpacker must never follow it on the host.
    dest, outside = sandbox
    tar = make_tar(
        tmp_path / "l.tgz",
        [link_entry("lib", str(outside)), file_entry("lib/evil.so", b"pwned")],
    )
    with pytest.raises(UnsafeArchive, match="through a link"):
        unpack_layer(tar, dest)
    assert everything_under(outside) == []


def test_it_writes_through_no_link_at_all_even_one_inside_the_layer(sandbox, tmp_path):
    # Layers name real paths (an image's /bin -> usr/bin is "usr/bin/x" in
    # the next layer), so a link on an entry's way is refused outright
    # rather than resolved on the host.
    dest, outside = sandbox
    tar = make_tar(
        tmp_path / "l.tgz",
        [dir_entry("usr"), link_entry("lib", "usr"), file_entry("lib/x.so", b"x")],
    )
    with pytest.raises(UnsafeArchive, match="through a link"):
        unpack_layer(tar, dest)
    assert everything_under(outside) == []
    assert not (dest / "usr" / "x.so").exists()


def test_it_does_not_follow_a_planted_file_symlink_when_writing(sandbox, tmp_path):
    # A symlink entry, then a file entry with the same name: the file must
    # replace the link, not write through it.
    dest, outside = sandbox
    victim = outside / "victim"
    victim.write_text("original")
    tar = make_tar(
        tmp_path / "l.tgz",
        [
            link_entry("etc/passwd", str(victim)),
            file_entry("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        ],
    )
    unpack_layer(tar, dest)
    assert victim.read_text() == "original"
    assert not (dest / "etc/passwd").is_symlink()
    assert (dest / "etc/passwd").read_bytes().startswith(b"root:")


def test_it_refuses_a_hardlink_climbing_out(sandbox, tmp_path):
    dest, outside = sandbox
    secret = outside / "secret"
    secret.write_text("host secret")
    tar = make_tar(
        tmp_path / "l.tgz", [link_entry("etc/shadow", "../outside/secret", tarfile.LNKTYPE)]
    )
    with pytest.raises(UnsafeArchive, match="outside"):
        unpack_layer(tar, dest)
    assert os.stat(secret).st_nlink == 1
    assert everything_under(outside) == ["secret"]


def test_it_refuses_an_absolute_hardlink(sandbox, tmp_path):
    dest, outside = sandbox
    secret = outside / "secret"
    secret.write_text("host secret")
    tar = make_tar(tmp_path / "l.tgz", [link_entry("etc/shadow", str(secret), tarfile.LNKTYPE)])
    with pytest.raises(UnsafeArchive, match="absolute"):
        unpack_layer(tar, dest)
    assert os.stat(secret).st_nlink == 1


def test_it_refuses_a_hardlink_through_a_symlink_leading_out(sandbox, tmp_path):
    dest, outside = sandbox
    secret = outside / "secret"
    secret.write_text("host secret")
    tar = make_tar(
        tmp_path / "l.tgz",
        [
            link_entry("hostdir", str(outside)),
            link_entry("stolen", "hostdir/secret", tarfile.LNKTYPE),
        ],
    )
    with pytest.raises(UnsafeArchive, match="through a link"):
        unpack_layer(tar, dest)
    assert os.stat(secret).st_nlink == 1


def test_it_links_a_symlink_itself_never_its_host_target(sandbox, tmp_path):
    # A hard link to an in-layer symlink (pointing anywhere) must link the
    # symlink, not the host file behind it.
    dest, outside = sandbox
    secret = outside / "secret"
    secret.write_text("host secret")
    tar = make_tar(
        tmp_path / "l.tgz",
        [link_entry("alias", str(secret)), link_entry("stolen", "alias", tarfile.LNKTYPE)],
    )
    unpack_layer(tar, dest)
    assert os.stat(secret).st_nlink == 1
    assert (dest / "stolen").is_symlink()


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_it_refuses_device_nodes(sandbox, tmp_path, kind):
    dest, outside = sandbox
    info = tarfile.TarInfo("dev/sda")
    info.type = kind
    info.devmajor, info.devminor = 8, 0
    tar = make_tar(tmp_path / "l.tgz", [info])
    with pytest.raises(UnsafeArchive, match="device"):
        unpack_layer(tar, dest)
    assert not os.path.lexists(dest / "dev/sda")
    assert everything_under(outside) == []


def test_it_refuses_a_whiteout_naming_the_parent(sandbox, tmp_path):
    dest, _ = sandbox
    tar = make_tar(tmp_path / "l.tgz", [file_entry("etc/.wh..", b"")])
    with pytest.raises(UnsafeArchive):
        unpack_layer(tar, dest)


def test_it_refuses_a_destination_that_is_not_empty(sandbox, tmp_path):
    dest, _ = sandbox
    (dest / "stale").write_text("x")
    tar = make_tar(tmp_path / "l.tgz", [file_entry("a")])
    with pytest.raises(UnsafeArchive, match="not empty"):
        unpack_layer(tar, dest)


def test_it_refuses_garbage_that_is_not_a_tar(sandbox, tmp_path):
    dest, _ = sandbox
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"\x1f\x8b" + os.urandom(500))
    with pytest.raises(UnsafeArchive, match="not a readable tar"):
        unpack_layer(junk, dest)


@pytest.mark.root
def test_it_turns_oci_whiteouts_into_overlay_whiteouts(sandbox, tmp_path):
    dest, _ = sandbox
    tar = make_tar(
        tmp_path / "l.tgz",
        [
            dir_entry("etc"),
            file_entry("etc/.wh.motd", b""),
            dir_entry("var/cache"),
            file_entry("var/cache/.wh..wh..opq", b""),
            file_entry("var/cache/fresh", b"new"),
        ],
    )
    unpack_layer(tar, dest)
    st = os.lstat(dest / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not os.path.lexists(dest / "etc/.wh.motd")
    assert os.getxattr(dest / "var/cache", OPAQUE_XATTR) == b"y"
    assert (dest / "var/cache/fresh").read_bytes() == b"new"
    assert not os.path.lexists(dest / "var/cache/.wh..wh..opq")


def test_a_whiteout_never_hides_an_entry_of_its_own_layer(sandbox, tmp_path):
    dest, _ = sandbox
    tar = make_tar(tmp_path / "l.tgz", [file_entry("keep", b"mine"), file_entry(".wh.keep", b"")])
    unpack_layer(tar, dest)
    assert (dest / "keep").read_bytes() == b"mine"


def test_it_keeps_modes_owners_and_setuid_bits(sandbox, tmp_path):
    dest, _ = sandbox
    info, data = file_entry("bin/su", b"#!", mode=0o4755)
    info.uid, info.gid = 0, 0
    owned, odata = file_entry("home/nobody/f", b"x", mode=0o600)
    owned.uid, owned.gid = 65534, 65534
    tar = make_tar(tmp_path / "l.tgz", [(info, data), (owned, odata)])
    unpack_layer(tar, dest)
    assert stat.S_IMODE(os.stat(dest / "bin/su").st_mode) == 0o4755
    st = os.stat(dest / "home/nobody/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)


def test_it_reports_the_diff_id_of_the_uncompressed_tar(sandbox, tmp_path):
    import gzip
    import hashlib

    dest, _ = sandbox
    tar = make_tar(tmp_path / "l.tgz", [file_entry("a", b"hello")])
    expected = "sha256:" + hashlib.sha256(gzip.decompress(tar.read_bytes())).hexdigest()
    assert unpack_layer(tar, dest).diff_id == expected


def test_an_entry_the_filesystem_cannot_take_is_reported_as_unsafe(sandbox, tmp_path):
    dest, _ = sandbox
    tar = make_tar(tmp_path / "l.tgz", [file_entry("a" * 300)])  # NAME_MAX is 255
    with pytest.raises(UnsafeArchive, match="cannot be unpacked"):
        unpack_layer(tar, dest)
