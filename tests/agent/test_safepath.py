"""safepath: nothing in a tree a tenant shaped is ever followed out of it.

Each test plants links the way a hostile build would (to a "host" canary
directory outside the tree) and checks the canary is untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory standing for the host: must never change."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    (host / "sub").mkdir()
    (host / "sub" / "f").write_text("host file\n")
    return host


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body: bytes | str = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                body = Path(path).read_bytes()
            else:
                body = b""
            out[os.path.relpath(path, root)] = (st.st_mode, body)
    return out


@pytest.fixture
def tree(tmp_path: Path, canary: Path) -> Path:
    """A tenant's tree: links to the canary by absolute and relative names."""
    root = tmp_path / "tree"
    (root / "app").mkdir(parents=True)
    (root / "app" / "code.py").write_text("print(1)\n")
    (root / "abs").symlink_to(canary)
    (root / "rel").symlink_to("../host")
    (root / "app" / "file-link").symlink_to(canary / "secret")
    return root


def test_openat2_refuses_a_link_on_the_way(tree: Path):
    with safepath.opened_dir(tree) as fd:
        with pytest.raises(UnsafePath, match="symbolic link"):
            safepath.openat2(fd, "abs/secret", os.O_RDONLY)
        with pytest.raises(UnsafePath, match="symbolic link"):
            safepath.openat2(fd, "app/file-link", os.O_RDONLY)
        with pytest.raises(UnsafePath, match="outside"):
            safepath.openat2(fd, "../host/secret", os.O_RDONLY)
        with pytest.raises(UnsafePath):
            safepath.openat2(fd, "/etc/passwd", os.O_RDONLY)
        with safepath.closing(safepath.openat2(fd, "app/code.py", os.O_RDONLY)) as f:
            assert os.read(f, 100) == b"print(1)\n"


def test_in_root_follows_links_as_the_tenants_own_root_would(tree: Path):
    (tree / "applink").symlink_to("/app")  # "/" is the tree, not the host
    (tree / "app" / "to-code").symlink_to("code.py")
    with safepath.opened_dir(tree) as fd:
        with safepath.closing(
            safepath.openat2(fd, "applink/code.py", os.O_RDONLY, resolve=safepath.IN_ROOT)
        ) as f:
            assert os.read(f, 100) == b"print(1)\n"
        # The last name is never followed (O_NOFOLLOW), even in root mode.
        with pytest.raises(UnsafePath):
            safepath.openat2(fd, "app/to-code", os.O_RDONLY, resolve=safepath.IN_ROOT)
        # abs -> <canary path> means <tree>/<canary path> here: not there.
        with pytest.raises(FileNotFoundError):
            safepath.openat2(fd, "abs/secret", os.O_RDONLY, resolve=safepath.IN_ROOT)


def test_lstat_sees_links_and_never_goes_through_them(tree: Path):
    with safepath.opened_dir(tree) as fd:
        st = safepath.lstat(fd, "abs")
        assert st is not None and stat.S_ISLNK(st.st_mode)
        assert safepath.lstat(fd, "missing") is None
        with pytest.raises(UnsafePath):
            safepath.lstat(fd, "abs/secret")
        assert safepath.readlink(fd, "rel") == "../host"


def test_list_dir_is_sorted_and_does_not_follow(tree: Path):
    with safepath.opened_dir(tree) as fd:
        entries = safepath.list_dir(fd)
    assert [name for name, _ in entries] == ["abs", "app", "rel"]
    assert stat.S_ISLNK(entries[0][1].st_mode)


def test_make_dirs_refuses_a_link_and_calls_back_for_new_dirs(tree: Path, canary: Path):
    before = snapshot(canary)
    made: list[str] = []
    with safepath.opened_dir(tree) as fd:
        with pytest.raises(UnsafePath):
            safepath.make_dirs(fd, "abs/new")
        with pytest.raises(UnsafePath):
            safepath.make_dirs(fd, "app/file-link/new")
        with pytest.raises(UnsafePath):
            safepath.make_dirs(fd, "app/code.py/new")
        sub = safepath.make_dirs(fd, "app/a/b", on_create=lambda _fd, rel: made.append(rel))
        os.close(sub)
    assert made == ["app/a", "app/a/b"]
    assert (tree / "app/a/b").is_dir()
    assert snapshot(canary) == before


def test_remove_takes_links_away_and_never_what_they_point_at(tree: Path, canary: Path):
    before = snapshot(canary)
    (tree / "app" / "deep").mkdir()
    (tree / "app" / "deep" / "host").symlink_to(canary)
    with safepath.opened_dir(tree) as fd:
        assert safepath.remove(fd, "abs")
        assert safepath.remove(fd, "app")
        assert not safepath.remove(fd, "missing")
        with pytest.raises(UnsafePath):
            safepath.remove_beneath(fd, "rel/secret")
    assert sorted(os.listdir(tree)) == ["rel"]
    assert snapshot(canary) == before


def test_remove_tree_of_a_host_dir_leaves_link_targets(tree: Path, canary: Path):
    before = snapshot(canary)
    safepath.remove_tree(tree)
    assert not tree.exists()
    safepath.remove_tree(tree)  # nothing there: fine
    assert snapshot(canary) == before


def test_copy_tree_copies_links_as_links_and_never_writes_through(tmp_path: Path, canary: Path):
    before = snapshot(canary)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "secret").write_text("tenant\n")  # where dst has a link to a host file
    (src / "sub" / "f").write_text("tenant f\n")
    (src / "dirlink").mkdir()  # where dst has a link to a host dir
    (src / "dirlink" / "x").write_text("x\n")
    (src / "link").symlink_to("/etc/passwd")
    os.chmod(src / "secret", 0o4755)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "secret").symlink_to(canary / "secret")
    (dst / "sub").symlink_to(canary / "sub")
    (dst / "dirlink").symlink_to("../host")
    with safepath.opened_dir(src) as s, safepath.opened_dir(dst) as d:
        safepath.copy_tree(s, d, owner=(1000, 1001))
    assert snapshot(canary) == before
    assert (dst / "secret").read_text() == "tenant\n" and not (dst / "secret").is_symlink()
    assert stat.S_IMODE((dst / "secret").stat().st_mode) == 0o4755
    assert (dst / "sub").is_dir() and not (dst / "sub").is_symlink()
    assert (dst / "sub" / "f").read_text() == "tenant f\n"
    assert (dst / "dirlink" / "x").read_text() == "x\n"
    assert os.readlink(dst / "link") == "/etc/passwd"
    assert os.lstat(dst / "link").st_uid == 1000
    assert (os.lstat(dst / "sub").st_uid, os.lstat(dst / "sub").st_gid) == (1000, 1001)


def test_copy_tree_keeps_layer_entries_and_skips(tmp_path: Path):
    src = tmp_path / "src"
    (src / "opaque").mkdir(parents=True)
    os.setxattr(src / "opaque", safepath.COPIED_XATTRS[1], b"y")
    os.mknod(src / "gone", 0o600 | stat.S_IFCHR, 0)  # an overlay whiteout
    os.mkfifo(src / "fifo")
    (src / "skipped").mkdir()
    (src / "skipped" / "f").write_text("no\n")
    os.chown(src / "opaque", 5, 6)
    dst = tmp_path / "dst"
    dst.mkdir()
    with safepath.opened_dir(src) as s, safepath.opened_dir(dst) as d:
        safepath.copy_tree(s, d, skip=lambda rel: rel == "skipped")
    assert os.getxattr(dst / "opaque", safepath.COPIED_XATTRS[1]) == b"y"
    assert (os.lstat(dst / "opaque").st_uid, os.lstat(dst / "opaque").st_gid) == (5, 6)
    gone = os.lstat(dst / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert not (dst / "skipped").exists()


def test_copy_entry_replaces_a_directory_with_a_file_and_back(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_text("in dir\n")
    (src / "f").write_text("a file\n")
    (dst / "f" / "deep").mkdir(parents=True)  # a directory where the file goes
    (dst / "d").write_text("a file where the directory goes\n")
    with safepath.opened_dir(src) as s, safepath.opened_dir(dst) as d:
        safepath.copy_entry(s, "f", d, "f")
        safepath.copy_entry(s, "d", d, "d")
    assert (dst / "f").read_text() == "a file\n"
    assert (dst / "d" / "x").read_text() == "in dir\n"


def test_names_that_climb_or_nest_are_refused(tree: Path):
    with safepath.opened_dir(tree) as fd:
        with pytest.raises(UnsafePath):
            safepath.make_dirs(fd, "app/../../escape")
        with pytest.raises(UnsafePath):
            safepath.remove(fd, "app/code.py")  # one name, not a path
        with pytest.raises(UnsafePath):
            safepath.remove(fd, "..")
    assert not (tree.parent / "escape").exists()


def test_read_bytes_reads_regular_files_only(tree: Path):
    with safepath.opened_dir(tree) as fd:
        assert safepath.read_bytes(fd, "app/code.py") == b"print(1)\n"
        assert safepath.read_bytes(fd, "app/code.py", limit=5) == b"print"
        with pytest.raises(UnsafePath):
            safepath.read_bytes(fd, "app/file-link")
        with pytest.raises(UnsafePath):
            safepath.read_bytes(fd, "app")


def test_read_in_root_follows_links_as_the_tenant_would_and_never_out(tree: Path):
    (tree / "etc").mkdir()
    (tree / "etc" / "passwd").write_text("app:x:1000:1000::/:/bin/sh\n")
    (tree / "passwd-link").symlink_to("/etc/passwd")  # absolute: from the tree's root
    (tree / "loop").symlink_to("loop")
    os.mkfifo(tree / "fifo")
    with safepath.opened_dir(tree) as fd:
        assert (
            safepath.read_in_root(fd, "/passwd-link", limit=100) == b"app:x:1000:1000::/:/bin/sh\n"
        )
        assert safepath.read_in_root(fd, "/etc/passwd", limit=3) == b"app"
        # abs -> the canary's absolute path, which the tree's root does not have.
        assert safepath.read_in_root(fd, "/abs/secret", limit=100) is None
        assert safepath.read_in_root(fd, "/app/file-link", limit=100) is None
        assert safepath.read_in_root(fd, "/rel/secret", limit=100) is None  # ".." stops at the root
        for name in ("/loop", "/fifo", "/app", "/missing"):
            assert safepath.read_in_root(fd, name, limit=100) is None, name


@pytest.mark.parametrize("seed", range(20))
def test_copy_tree_of_random_hostile_trees_never_reaches_the_host(
    tmp_path: Path, canary: Path, seed: int
):
    """Random sources and destinations, both full of links to the canary
    (absolute, climbing, to files and to directories) under the names the
    other side uses: after the copy the canary is unchanged and every
    file or directory of the source is a real one in the destination."""
    import random

    rng = random.Random(seed)
    before = snapshot(canary)
    names = ["a", "b", "c", "secret", "sub"]
    targets = [str(canary), str(canary / "secret"), "../" * 12 + str(canary).lstrip("/"), "."]

    def fill(root: Path, depth: int) -> None:
        root.mkdir(exist_ok=True)
        for name in rng.sample(names, rng.randint(1, len(names))):
            kind = rng.choice(["file", "dir", "link"] if depth < 3 else ["file", "link"])
            path = root / name
            if kind == "file":
                path.write_text(f"{seed}:{name}\n")
            elif kind == "dir":
                fill(path, depth + 1)
            else:
                path.symlink_to(rng.choice(targets))

    src, dst = tmp_path / "src", tmp_path / "dst"
    fill(src, 0)
    fill(dst, 0)
    with safepath.opened_dir(src) as s, safepath.opened_dir(dst) as d:
        safepath.copy_tree(s, d)
    assert snapshot(canary) == before
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            st_src, st_dst = os.lstat(src / rel), os.lstat(dst / rel)
            assert stat.S_IFMT(st_src.st_mode) == stat.S_IFMT(st_dst.st_mode), rel
            if stat.S_ISLNK(st_src.st_mode):
                assert os.readlink(src / rel) == os.readlink(dst / rel)
            elif stat.S_ISREG(st_src.st_mode):
                assert (src / rel).read_bytes() == (dst / rel).read_bytes()
