"""pack_layer: the same tree always gives the same layer digest, and overlay
whiteouts become their OCI names."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from runtime_agent.images.layers import FIXED_MTIME, OPAQUE_XATTR, pack_layer, unpack_layer
from runtime_agent.wire import ID_RANGE_BASE, ID_RANGE_SIZE, IdRange


def make_tree(root: Path) -> Path:
    (root / "app/static").mkdir(parents=True)
    (root / "app/main.py").write_text("print('hello')\n")
    (root / "app/static/style.css").write_text("body {}\n")
    (root / "app/run.sh").write_text("#!/bin/sh\nexec python3 main.py\n")
    os.chmod(root / "app/run.sh", 0o755)
    (root / "app/current").symlink_to("main.py")
    os.link(root / "app/main.py", root / "app/main-copy.py")
    os.chown(root / "app/static", 65534, 65534)
    return root


def test_packing_the_same_dir_twice_gives_the_same_digest(tmp_path: Path):
    tree = make_tree(tmp_path / "tree")
    first = pack_layer(tree, tmp_path / "a.tgz")
    second = pack_layer(tree, tmp_path / "b.tgz")
    assert first == second
    assert (tmp_path / "a.tgz").read_bytes() == (tmp_path / "b.tgz").read_bytes()


def test_an_identical_tree_made_later_gives_the_same_digest(tmp_path: Path):
    one = pack_layer(make_tree(tmp_path / "one"), tmp_path / "one.tgz")
    two_root = make_tree(tmp_path / "two")
    for path in [two_root, *two_root.rglob("*")]:  # other mtimes throughout, same content
        os.utime(path, (1, 1), follow_symlinks=False)
    assert pack_layer(two_root, tmp_path / "two.tgz") == one


def test_a_changed_byte_changes_the_digest(tmp_path: Path):
    tree = make_tree(tmp_path / "tree")
    before = pack_layer(tree, tmp_path / "a.tgz")
    (tree / "app/static/style.css").write_text("body {}\n\n")
    assert pack_layer(tree, tmp_path / "b.tgz").digest != before.digest


def test_the_layer_info_describes_the_blob(tmp_path: Path):
    info = pack_layer(make_tree(tmp_path / "tree"), tmp_path / "l.tgz")
    blob = (tmp_path / "l.tgz").read_bytes()
    assert info.size == len(blob)
    assert info.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert info.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert blob[4:8] == b"\0\0\0\0"  # gzip header mtime: none
    assert not (tmp_path / "l.tgz.tmp").exists()


def test_entries_are_sorted_with_numeric_owners_and_one_mtime(tmp_path: Path):
    pack_layer(make_tree(tmp_path / "tree"), tmp_path / "l.tgz")
    with tarfile.open(tmp_path / "l.tgz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == [
        "app",
        "app/current",
        "app/main-copy.py",
        "app/main.py",
        "app/run.sh",
        "app/static",
        "app/static/style.css",
    ]
    assert {m.mtime for m in members} == {FIXED_MTIME}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    by_name = {m.name: m for m in members}
    assert (by_name["app/static"].uid, by_name["app/static"].gid) == (65534, 65534)
    assert by_name["app/run.sh"].mode == 0o755
    # main-copy.py comes first in order, so it carries the bytes.
    assert by_name["app/main.py"].islnk() and by_name["app/main.py"].linkname == "app/main-copy.py"


def test_it_leaves_devices_and_sockets_out(tmp_path: Path):
    tree = make_tree(tmp_path / "tree")
    os.mknod(tree / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    short = Path("/tmp") / f"pk-{os.getpid()}.sock"
    sock.bind(str(short))
    shutil.move(str(short), tree / "app.sock")
    sock.close()
    pack_layer(tree, tmp_path / "l.tgz")
    with tarfile.open(tmp_path / "l.tgz") as tar:
        names = tar.getnames()
    assert "null" not in names and "app.sock" not in names


@pytest.mark.root
def test_overlay_whiteouts_and_opaque_dirs_become_oci_names(tmp_path: Path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/motd", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    (upper / "var/cache").mkdir(parents=True)
    os.setxattr(upper / "var/cache", OPAQUE_XATTR, b"y")
    (upper / "var/cache/new").write_text("new")
    pack_layer(upper, tmp_path / "l.tgz")
    with tarfile.open(tmp_path / "l.tgz") as tar:
        names = tar.getnames()
    assert "etc/.wh.motd" in names and "etc/motd" not in names
    assert "var/cache/.wh..wh..opq" in names


@pytest.mark.root
def test_pack_then_unpack_gives_back_the_same_tree(tmp_path: Path):
    tree = make_tree(tmp_path / "tree")
    os.mknod(tree / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    info = pack_layer(tree, tmp_path / "l.tgz")
    out = tmp_path / "out"
    out.mkdir()
    assert unpack_layer(tmp_path / "l.tgz", out).diff_id == info.diff_id
    for rel in ("app/main.py", "app/run.sh", "app/static", "app/current", "gone"):
        a, b = os.lstat(tree / rel), os.lstat(out / rel)
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) == (
            b.st_mode,
            b.st_uid,
            b.st_gid,
            b.st_rdev,
        )
    assert os.stat(out / "app/main.py").st_ino == os.stat(out / "app/main-copy.py").st_ino
    assert os.readlink(out / "app/current") == "main.py"


@pytest.mark.root
def test_it_packs_a_mount_point_but_not_the_filesystem_mounted_there(tmp_path: Path):
    from runtime_agent.host.cmd import run

    tree = make_tree(tmp_path / "tree")
    (tree / "proc").mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tree / "proc")])
    try:
        (tree / "proc/host-only").write_text("not for the image")
        pack_layer(tree, tmp_path / "l.tgz", from_overlay_upper=False)
    finally:
        run(["umount", str(tree / "proc")])
    with tarfile.open(tmp_path / "l.tgz") as tar:
        names = tar.getnames()
    assert "proc" in names
    assert "proc/host-only" not in names


def test_packing_never_reads_through_a_link(tmp_path: Path):
    host = tmp_path / "host"
    (host / "dir").mkdir(parents=True)
    (host / "dir" / "secret").write_text("host secret\n")
    tree = tmp_path / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "dir").symlink_to(host / "dir")
    (tree / "app" / "file").symlink_to(host / "dir" / "secret")
    (tree / "climb").symlink_to("../host/dir")
    pack_layer(tree, tmp_path / "l.tgz")
    with tarfile.open(tmp_path / "l.tgz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {n for n, m in members.items() if m.issym()} == {"app/dir", "app/file", "climb"}
        assert not any("secret" in n for n in members)
        assert all(m.size == 0 for m in members.values())
    assert (host / "dir" / "secret").read_text() == "host secret\n"


@pytest.mark.root
def test_a_tree_written_in_a_user_namespace_is_packed_in_the_containers_view(tmp_path):
    # Written by a process whose root is host id R: R+n is recorded as n; an id
    # outside the range is what the container saw for it (the overflow id).
    id_range = IdRange(host_id=ID_RANGE_BASE + 7 * ID_RANGE_SIZE)
    root = tmp_path / "upper"
    (root / "d").mkdir(parents=True)
    (root / "d/f").write_text("x")
    (root / "host").write_text("y")
    os.chown(root / "d", id_range.host_id, id_range.host_id)
    os.chown(root / "d/f", id_range.host_id + 1000, id_range.host_id + 1001)
    os.chown(root / "host", 0, 0)
    pack_layer(root, tmp_path / "l.tgz", from_overlay_upper=True, id_range=id_range)
    with gzip.open(tmp_path / "l.tgz") as gz, tarfile.open(fileobj=gz) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners == {"d": (0, 0), "d/f": (1000, 1001), "host": (65534, 65534)}
    pack_layer(root, tmp_path / "plain.tgz", from_overlay_upper=True)
    with gzip.open(tmp_path / "plain.tgz") as gz, tarfile.open(fileobj=gz) as tar:
        assert tar.getmember("d/f").uid == id_range.host_id + 1000  # no range: as on disk


@pytest.mark.root
def test_file_capabilities_set_in_a_user_namespace_are_packed_as_real_roots(tmp_path):
    import struct

    id_range = IdRange(host_id=ID_RANGE_BASE + 9 * ID_RANGE_SIZE)
    root = tmp_path / "upper"
    root.mkdir()
    (root / "ping").write_text("x")
    net_raw = 1 << 13
    # v3 (with the namespace's root id), effective: what setcap in the step writes.
    v3 = struct.pack("<IIIIII", 0x03000001, net_raw, 0, 0, 0, id_range.host_id)
    os.setxattr(root / "ping", "security.capability", v3)
    pack_layer(root, tmp_path / "l.tgz", from_overlay_upper=True, id_range=id_range)
    with gzip.open(tmp_path / "l.tgz") as gz, tarfile.open(fileobj=gz) as tar:
        value = tar.getmember("ping").pax_headers["SCHILY.xattr.security.capability"]
    assert value.encode("utf-8", "surrogateescape") == struct.pack(
        "<IIIII", 0x02000001, net_raw, 0, 0, 0
    )
