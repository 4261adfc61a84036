"""Alice uploads her app's source; Mallory uploads archives built to escape.

Every refusal checks the message (it names the entry) and that nothing was
written anywhere: the work directory holds only the empty build directory,
and the path an escape aimed at does not exist.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Literal

import pytest

from paas.builds.archive import (
    ArchiveError,
    ArchiveFormat,
    ArchiveLimits,
    ArchiveTooLarge,
    UnsafeArchive,
    detect_format,
    extract_archive,
)
from runtime_agent.host import cmd

LIMITS = ArchiveLimits()
TarMode = Literal["w", "w:gz", "w:bz2"]


# --- building archives -----------------------------------------------------------


def file_(name: str, data: bytes = b"hello\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dir_(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, b""


def link_(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, b""


def write_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes], mode: TarMode = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def zip_entry(name: str, data: bytes = b"hello\n", mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so the mode in external_attr counts
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(path: Path, *entries: tuple[zipfile.ZipInfo, bytes]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate test's names
        with zipfile.ZipFile(path, "w") as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return path


# --- where things land --------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp_path/work/build/source is the destination; everything under work/
    other than the empty build/ directory would be a write outside."""
    (tmp_path / "work" / "build").mkdir(parents=True)
    return tmp_path / "work"


@pytest.fixture
def dest(work: Path) -> Path:
    return work / "build" / "source"


def assert_nothing_written(work: Path, *outside: Path) -> None:
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    assert left == ["build"], f"left behind: {left}"
    for path in outside:
        assert not os.path.lexists(path), f"{path} was written"


def refuse(archive: Path, dest: Path, match: str, limits: ArchiveLimits = LIMITS) -> UnsafeArchive:
    with pytest.raises(UnsafeArchive, match=match) as caught:
        extract_archive(archive, dest, limits=limits)
    return caught.value


def unique() -> str:
    return f"evil-{uuid.uuid4().hex[:8]}"


def tree(root: Path) -> dict[str, str]:
    """Every path under root with what it is: 'dir', 'file:<mode>:<data>' or
    'link:<target>'."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = f"file:{oct(stat.S_IMODE(path.stat().st_mode))}:{path.read_bytes()!r}"
    return out


# --- escapes --------------------------------------------------------------------------


def test_it_refuses_an_entry_climbing_out_with_dotdot(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("ok.txt"), file_("../../escaped.txt"))
    refuse(archive, dest, r"entry '\.\./\.\./escaped\.txt' points outside")
    assert_nothing_written(work, work / "escaped.txt", work / "build" / "escaped.txt")


def test_it_refuses_a_zip_entry_climbing_out_with_backslashes(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("..\\..\\escaped.txt"), b"x"))
    refuse(archive, dest, r"entry '\.\./\.\./escaped\.txt' points outside")
    assert_nothing_written(work, work / "escaped.txt")


def test_it_refuses_an_absolute_path(tmp_path, work, dest):
    target = tmp_path / "elsewhere" / "escaped.txt"
    archive = write_tar(tmp_path / "up.tar", file_(str(target)))
    refuse(archive, dest, re.escape(f"entry '{target}' has an absolute path"))
    assert_nothing_written(work, target)
    assert not target.parent.exists()


def test_it_refuses_a_windows_drive_letter(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("C:\\Windows\\evil.txt"), b"x"))
    refuse(archive, dest, r"entry 'C:/Windows/evil\.txt' has an absolute path")
    assert_nothing_written(work)


def test_it_refuses_a_symlink_pointing_to_etc(tmp_path, work, dest):
    name = unique()
    archive = write_tar(tmp_path / "up.tar", link_("etc", "/etc"), file_(f"etc/{name}"))
    refuse(archive, dest, r"symlink 'etc' points outside the archive \(to '/etc'\)")
    assert_nothing_written(work, Path("/etc") / name)


def test_it_refuses_a_symlink_climbing_out(tmp_path, work, dest):
    archive = write_tar(
        tmp_path / "up.tar", dir_("sub"), link_("sub/up", "../../.."), file_("sub/up/escaped.txt")
    )
    refuse(archive, dest, r"symlink 'sub/up' points outside the archive \(to '\.\./\.\./\.\.'\)")
    assert_nothing_written(work, work / "escaped.txt", tmp_path / "escaped.txt")


def test_it_refuses_a_symlink_chain_that_ends_outside(tmp_path, work, dest):
    # Each link looks inside on paper ("sub/b/.." reads as "sub"), but b is
    # itself a link to the root, so c really is the root's parent.
    archive = write_tar(
        tmp_path / "up.tar", dir_("sub"), link_("sub/b", ".."), link_("c", "sub/b/..")
    )
    refuse(archive, dest, r"symlink 'c' points outside the archive \(to 'sub/b/\.\.'\)")
    assert_nothing_written(work)


def test_it_refuses_a_zip_symlink_pointing_outside(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("passwd", mode=0o120777), b"/etc/passwd"))
    refuse(archive, dest, r"symlink 'passwd' points outside the archive \(to '/etc/passwd'\)")
    assert_nothing_written(work)


def test_it_refuses_a_hardlink_pointing_outside(tmp_path, work, dest):
    links_before = os.stat("/etc/passwd").st_nlink
    archive = write_tar(
        tmp_path / "up.tar", link_("passwd", "../../../../../../etc/passwd", tarfile.LNKTYPE)
    )
    refuse(archive, dest, r"hardlink 'passwd' points outside the archive")
    assert_nothing_written(work)
    assert os.stat("/etc/passwd").st_nlink == links_before


def test_it_refuses_a_hardlink_to_an_absolute_path(tmp_path, work, dest):
    links_before = os.stat("/etc/passwd").st_nlink
    archive = write_tar(tmp_path / "up.tar", link_("passwd", "/etc/passwd", tarfile.LNKTYPE))
    refuse(archive, dest, r"hardlink 'passwd' points outside the archive \(to '/etc/passwd'\)")
    assert_nothing_written(work)
    assert os.stat("/etc/passwd").st_nlink == links_before


def test_it_refuses_a_hardlink_to_a_file_not_in_the_archive(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", link_("copy", "missing.txt", tarfile.LNKTYPE))
    refuse(archive, dest, r"hardlink 'copy' points to 'missing\.txt', which is not a file earlier")
    assert_nothing_written(work)


def test_it_refuses_a_hardlink_to_a_symlink(tmp_path, work, dest):
    # A hardlink to a symlink is a second symlink somewhere else, where its
    # relative target ("../x") would mean a different place.
    archive = write_tar(
        tmp_path / "up.tar",
        file_("x"),
        dir_("d"),
        link_("d/l", "../x"),
        link_("m", "d/l", tarfile.LNKTYPE),
    )
    refuse(archive, dest, r"hardlink 'm' points to 'd/l', which is not a file earlier")
    assert_nothing_written(work)


def test_it_refuses_to_write_through_a_planted_symlink(tmp_path, work, dest):
    # "inside" -> "sub" is harmless itself; writing through any link is not
    # allowed, so no later entry can be redirected by an earlier one.
    archive = write_tar(
        tmp_path / "up.tar", dir_("sub"), link_("inside", "sub"), file_("inside/planted.txt")
    )
    refuse(archive, dest, r"entry 'inside/planted\.txt' would be written through the symlink")
    assert_nothing_written(work)


def test_it_refuses_to_write_through_a_symlink_made_to_look_inside(tmp_path, work, dest):
    archive = write_tar(
        tmp_path / "up.tar",
        dir_("sub"),
        link_("sub/b", ".."),
        file_("sub/b/escaped.txt"),
    )
    refuse(archive, dest, r"entry 'sub/b/escaped\.txt' would be written through the symlink")
    assert_nothing_written(work, work / "build" / "escaped.txt")


# --- special files ----------------------------------------------------------------------


def test_it_refuses_a_device_file(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("ok.txt"), special("null", tarfile.CHRTYPE))
    refuse(archive, dest, r"entry 'null' is a device file")
    assert_nothing_written(work)


def test_it_refuses_a_block_device(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", special("disk", tarfile.BLKTYPE))
    refuse(archive, dest, r"entry 'disk' is a device file")
    assert_nothing_written(work)


def test_it_refuses_a_fifo(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", special("pipe", tarfile.FIFOTYPE))
    refuse(archive, dest, r"entry 'pipe' is a FIFO")
    assert_nothing_written(work)


def test_it_refuses_a_socket_in_a_zip(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("sock", mode=0o140755), b""))
    refuse(archive, dest, r"entry 'sock' is a socket")
    assert_nothing_written(work)


# --- limits ---------------------------------------------------------------------------------


def test_it_refuses_too_many_files(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", *(file_(f"f{i}.txt") for i in range(6)))
    err = refuse(
        archive,
        dest,
        r"more than 5 entries \(stopped at entry 'f5\.txt'\)",
        ArchiveLimits(max_files=5),
    )
    assert isinstance(err, ArchiveTooLarge)
    assert_nothing_written(work)


def test_it_refuses_a_zip_with_too_many_entries_before_reading_any(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", *((zip_entry(f"f{i}"), b"x") for i in range(6)))
    err = refuse(archive, dest, r"more than 5 entries", ArchiveLimits(max_files=5))
    assert err.data["bytes_written"] == 0
    assert_nothing_written(work)


def test_it_refuses_an_archive_too_big_once_extracted(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("a.bin", b"a" * 600), file_("b.bin", b"b" * 600))
    err = refuse(
        archive,
        dest,
        r"more than 1000 bytes once extracted \(stopped at entry 'b\.bin'\)",
        ArchiveLimits(max_total_bytes=1000),
    )
    assert err.data["bytes_written"] == 600
    assert_nothing_written(work)


def test_it_refuses_a_file_over_the_entry_cap(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("small"), file_("big", b"x" * 2000))
    refuse(
        archive,
        dest,
        r"larger than the limit of 1000 bytes \(stopped at entry 'big'\)",
        ArchiveLimits(max_entry_bytes=1000),
    )
    assert_nothing_written(work)


BOMB_SIZE = 50 * 1024 * 1024


def test_it_stops_a_zip_bomb_early(tmp_path, work, dest):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.txt", "w") as fh:
        for _ in range(BOMB_SIZE // (1024 * 1024)):
            fh.write(bytes(1024 * 1024))
    assert archive.stat().st_size < BOMB_SIZE // 500  # it really is a bomb

    err = refuse(
        archive,
        dest,
        r"'bomb\.zip' expands to more than 10 times its size; it looks like a zip bomb "
        r"\(stopped at entry 'bomb\.txt'\)",
        ArchiveLimits(max_ratio=10),
    )
    # Stopped after the grace megabyte, not after the whole member.
    assert err.data["bytes_written"] < 2 * 1024 * 1024
    assert_nothing_written(work)


def test_it_stops_a_tar_gz_bomb_early(tmp_path, work, dest):
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = BOMB_SIZE
        tf.addfile(info, io.BytesIO(bytes(BOMB_SIZE)))

    err = refuse(
        archive,
        dest,
        r"expands to more than 10 times its size.*\(stopped at entry 'zeros\.bin'\)",
        ArchiveLimits(max_ratio=10),
    )
    assert err.data["bytes_written"] < 2 * 1024 * 1024
    assert_nothing_written(work)


def test_it_refuses_a_tar_header_big_enough_to_exhaust_memory(tmp_path, work, dest):
    info, data = file_("ok.txt")
    info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
    archive = write_tar(tmp_path / "up.tar", file_("first.txt"), (info, data))
    refuse(archive, dest, r"a tar header is larger than 1048576 bytes")
    assert_nothing_written(work)


# --- broken input -----------------------------------------------------------------------------


def test_it_refuses_duplicate_entries(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("app.py", b"one"), file_("./app.py", b"two"))
    refuse(archive, dest, r"entry 'app\.py' appears twice in the archive")
    assert_nothing_written(work)


def test_it_refuses_duplicate_entries_in_a_zip(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("a.py"), b"1"), (zip_entry("a.py"), b"2"))
    refuse(archive, dest, r"entry 'a\.py' appears twice in the archive")
    assert_nothing_written(work)


def test_it_refuses_a_file_where_an_earlier_entry_made_a_directory(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("lib/x.py"), file_("lib"))
    refuse(archive, dest, r"entry 'lib' clashes with an earlier entry at the same path")
    assert_nothing_written(work)


def test_it_refuses_a_name_too_long_for_the_filesystem(tmp_path, work, dest):
    archive = write_tar(tmp_path / "up.tar", file_("ok.txt"), file_("a" * 300))
    refuse(archive, dest, r"entry 'a{300}' cannot be written: File name too long")
    assert_nothing_written(work)


def test_it_refuses_garbage_that_is_not_an_archive(tmp_path, work, dest):
    archive = tmp_path / "app.zip"
    archive.write_bytes(b"this is not an archive\n" * 200)
    with pytest.raises(ArchiveError, match=r"'app\.zip' is not an archive we can read") as caught:
        extract_archive(archive, dest, limits=LIMITS)
    assert ".tar, .tar.gz/.tgz or .zip" in caught.value.message
    assert_nothing_written(work)


def test_it_names_a_format_it_does_not_accept(tmp_path):
    archive = tmp_path / "app.tar.bz2"
    write_tar(archive, file_("app.py"), mode="w:bz2")
    with pytest.raises(ArchiveError, match=r"'app\.tar\.bz2' is a bzip2 file; upload a \.tar"):
        detect_format(archive, "app.tar.bz2")


def test_it_refuses_a_gzip_file_that_holds_no_tar(tmp_path, work, dest):
    import gzip

    archive = tmp_path / "app.tgz"
    archive.write_bytes(gzip.compress(b"just some text, no tar here\n" * 40))
    with pytest.raises(ArchiveError, match=r"gzip-compressed but holds no tar archive"):
        extract_archive(archive, dest, limits=LIMITS)
    assert_nothing_written(work)


def test_it_refuses_a_truncated_archive(tmp_path, work, dest):
    full = write_tar(tmp_path / "full.tar.gz", file_("big.bin", os.urandom(200_000)), mode="w:gz")
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(full.read_bytes()[:100_000])
    with pytest.raises(
        ArchiveError, match=r"'cut\.tar\.gz' is damaged or truncated near entry 'big\.bin'"
    ):
        extract_archive(archive, dest, limits=LIMITS)
    assert_nothing_written(work)


def test_it_names_the_uploaded_file_not_the_stored_one(tmp_path, work, dest):
    stored = tmp_path / "0b5e.upload"
    stored.write_bytes(b"not an archive")
    with pytest.raises(ArchiveError, match=r"^'alices app\.zip' is not an archive"):
        extract_archive(stored, dest, limits=LIMITS, filename="alices app.zip")
    assert_nothing_written(work)


def test_it_refuses_an_encrypted_zip_entry(tmp_path, work, dest):
    archive = write_zip(tmp_path / "up.zip", (zip_entry("secret.txt"), b"ciphertext"))
    # Python cannot write encrypted zips: set the "encrypted" flag bit that
    # `zip -e` sets, in the local header (offset 6) and the central one (8).
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + offset] |= 0x1
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"entry 'secret\.txt' is encrypted"):
        extract_archive(archive, dest, limits=LIMITS)
    assert_nothing_written(work)


def test_it_refuses_a_destination_that_already_holds_files(tmp_path, dest):
    archive = write_tar(tmp_path / "up.tar", file_("app.py"))
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_archive(archive, dest, limits=LIMITS)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


# --- alice's real uploads ----------------------------------------------------------------


def alices_app_tar(path: Path, mode: TarMode) -> Path:
    return write_tar(
        path,
        dir_("src", 0o700),
        file_("src/pkg/deep/module.py", b"x = 1\n"),
        file_("bin/start", b"#!/bin/sh\nexec app\n", 0o4755),
        file_("Procfile", b"web: bin/start\n", 0o640),
        link_("current", "src/pkg"),
        link_("start-again", "bin/start", tarfile.LNKTYPE),
        mode=mode,
    )


ALICES_TREE = {
    "Procfile": "file:0o640:b'web: bin/start\\n'",
    "bin": "dir",
    "bin/start": "file:0o755:b'#!/bin/sh\\nexec app\\n'",
    "current": "link:src/pkg",
    "src": "dir",
    "src/pkg": "dir",
    "src/pkg/deep": "dir",
    "src/pkg/deep/module.py": "file:0o644:b'x = 1\\n'",
    "start-again": "file:0o755:b'#!/bin/sh\\nexec app\\n'",
}


@pytest.mark.parametrize(
    ("filename", "mode", "fmt"),
    [
        ("alices-app.tar.gz", "w:gz", ArchiveFormat.TAR_GZ),
        ("alices-app.tgz", "w:gz", ArchiveFormat.TAR_GZ),
        ("alices-app.tar", "w", ArchiveFormat.TAR),
    ],
)
def test_it_extracts_alices_tar(tmp_path, dest, filename, mode, fmt):
    archive = alices_app_tar(tmp_path / filename, mode)
    assert detect_format(archive, filename) is fmt
    lines: list[str] = []

    summary = extract_archive(archive, dest, limits=LIMITS, log=lines.append)

    assert tree(dest) == ALICES_TREE
    assert os.stat(dest / "bin/start").st_ino == os.stat(dest / "start-again").st_ino
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert (summary.files, summary.dirs, summary.symlinks) == (4, 4, 1)
    assert summary.total_bytes == 6 + 19 + 15
    assert summary.stripped_top_level is None
    assert lines[-1] == "Extracted 4 files, 4 directories and 1 symlinks (40 bytes)"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["source"]  # no staging left


def test_it_extracts_alices_zip(tmp_path, dest):
    archive = write_zip(
        tmp_path / "alices-app.zip",
        (zip_entry("src/pkg/deep/module.py"), b"x = 1\n"),
        (zip_entry("bin/start", mode=0o104755), b"#!/bin/sh\nexec app\n"),
        (zip_entry("Procfile", mode=0o100640), b"web: bin/start\n"),
        (zip_entry("current", mode=0o120777), b"src/pkg"),
        (zip_entry("src/", mode=0o40700), b""),
    )
    assert detect_format(archive, "alices-app.zip") is ArchiveFormat.ZIP

    summary = extract_archive(archive, dest, limits=LIMITS)

    expected = {k: v for k, v in ALICES_TREE.items() if k != "start-again"}
    assert tree(dest) == expected
    assert (summary.files, summary.dirs, summary.symlinks) == (3, 4, 1)


def test_it_reads_the_format_from_the_bytes_not_the_name(tmp_path):
    archive = write_zip(tmp_path / "looks-like.tar.gz", (zip_entry("app.py"), b""))
    assert detect_format(archive, "looks-like.tar.gz") is ArchiveFormat.ZIP


def test_it_extracts_a_zip_made_on_windows_with_default_modes(tmp_path, dest):
    info = zipfile.ZipInfo("app\\main.py")
    info.create_system = 0  # MS-DOS: no unix mode at all
    archive = write_zip(tmp_path / "win.zip", (info, b"print(1)\n"))
    extract_archive(archive, dest, limits=LIMITS)
    assert tree(dest) == {"main.py": "file:0o644:b'print(1)\\n'"}


def test_it_strips_a_single_top_level_directory(tmp_path, dest):
    # GitHub's tarballs: a global pax header with the commit, then app-main/.
    archive = tmp_path / "app-main.tar.gz"
    with tarfile.open(
        archive, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": "abc123"}
    ) as tf:
        for info, data in (
            dir_("app-main"),
            file_("app-main/Procfile", b"web: python app.py\n"),
            file_("app-main/lib/util.py", b"\n"),
            link_("app-main/util.py", "lib/util.py"),
        ):
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    lines: list[str] = []

    summary = extract_archive(archive, dest, limits=LIMITS, log=lines.append)

    assert tree(dest) == {
        "Procfile": "file:0o644:b'web: python app.py\\n'",
        "lib": "dir",
        "lib/util.py": "file:0o644:b'\\n'",
        "util.py": "link:lib/util.py",
    }
    assert summary.stripped_top_level == "app-main"
    assert summary.dirs == 1
    assert "Removed the top-level directory app-main/ that wrapped everything" in lines
    assert sorted(p.name for p in dest.parent.iterdir()) == ["source"]


def test_it_strips_the_top_level_directory_of_a_mac_zip(tmp_path, dest):
    archive = write_zip(
        tmp_path / "app.zip",
        (zip_entry("app/"), b""),
        (zip_entry("app/index.html"), b"<h1>hi</h1>"),
        (zip_entry("__MACOSX/app/._index.html"), b"\x00\x05\x16\x07"),
    )
    summary = extract_archive(archive, dest, limits=LIMITS)
    assert tree(dest) == {"index.html": "file:0o644:b'<h1>hi</h1>'"}
    assert summary.stripped_top_level == "app"


def test_it_keeps_the_layout_when_several_entries_sit_at_the_top(tmp_path, dest):
    archive = write_tar(tmp_path / "up.tar", file_("app/main.py"), file_("README"))
    summary = extract_archive(archive, dest, limits=LIMITS)
    assert set(tree(dest)) == {"README", "app", "app/main.py"}
    assert summary.stripped_top_level is None


def test_it_refuses_to_strip_when_a_symlink_would_then_point_outside(tmp_path, work, dest):
    # Inside app-main/, "../app-main/x" is fine; once app-main/ becomes the
    # root it would point at a sibling of the destination.
    archive = write_tar(
        tmp_path / "up.tar", file_("app-main/x"), link_("app-main/y", "../app-main/x")
    )
    refuse(
        archive,
        dest,
        r"symlink 'app-main/y' points outside the archive \(to '\.\./app-main/x'\) "
        r"once the top-level directory is removed",
    )
    assert_nothing_written(work)


def test_it_accepts_a_tiny_archive_of_repetitive_text(tmp_path, dest):
    # Ratio 1000+, but far below the grace amount: not a bomb.
    archive = write_tar(tmp_path / "up.tar.gz", file_("data.csv", b"0," * 100_000), mode="w:gz")
    summary = extract_archive(archive, dest, limits=ArchiveLimits(max_ratio=10))
    assert summary.total_bytes == 200_000


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_it_extracts_what_gnu_tar_makes(tmp_path, dest, tar_format):
    # Long names, sparse files and hardlinks are written the way GNU tar
    # writes them, not the way Python's tarfile does.
    src = tmp_path / "alices-app"
    deep = src / ("very-long-directory-name-" * 3) / ("and-another-one-" * 4)
    deep.mkdir(parents=True)
    (deep / "module.py").write_text("x = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    os.link(src / "run.sh", src / "run-again.sh")
    (src / "latest").symlink_to(deep.relative_to(src))
    with open(src / "sparse.db", "wb") as fh:
        fh.truncate(3 * 1024 * 1024)
        fh.write(b"x")
    archive = tmp_path / "alices-app.tar.gz"
    cmd.run(["tar", f"--format={tar_format}", "-S", "-czf", archive, "-C", tmp_path, "alices-app"])

    summary = extract_archive(archive, dest, limits=LIMITS)

    assert summary.stripped_top_level == "alices-app"
    long_name = str(deep.relative_to(src))
    assert len(long_name) > 100
    assert (dest / long_name / "module.py").read_text() == "x = 1\n"
    assert os.readlink(dest / "latest") == long_name
    assert os.stat(dest / "run.sh").st_ino == os.stat(dest / "run-again.sh").st_ino
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert (dest / "sparse.db").stat().st_size == 3 * 1024 * 1024
    assert summary.total_bytes == 6 + 10 + 3 * 1024 * 1024  # holes are written out
