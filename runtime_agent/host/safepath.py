"""The one place host code touches a tree a tenant shaped.

A tenant shapes trees the host later walks: an uploaded source, a build
step's overlay upper directory, a COPY layer whose earlier sources planted
links, a pulled image layer. A path walk through such a tree follows every
symlink on the way, so ``upper/app/node_modules`` may really be
``/etc/node_modules`` once a build step replaced ``/app`` with a link. So
everything here works relative to directory file descriptors:

- ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` (the kernel
  refuses any symlink on the way and any ``..`` or absolute name that would
  leave the directory), or ``RESOLVE_IN_ROOT`` where links must be followed
  the way the tenant's own root would (a COPY source: the build context is
  its root), always with ``O_NOFOLLOW`` on the last component;
- ``lstat``/``unlinkat``/``mkdirat``/``symlinkat`` on a name in an opened
  directory, never a path;
- a link is only ever copied as a link: never written through, never
  descended into.

The name checks at the end (:func:`clean_member_name`,
:func:`link_target_inside`) are what the archive unpackers (image layers,
uploaded source) run on a member's name and link target before anything is
written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime_agent.host.errors import UnsafeArchive, UnsafePath
from runtime_agent.host.libc import get_errno, libc

# openat2(2): the syscall number is the same on every architecture (new
# syscalls share one table since 5.x), and the flags from linux/openat2.h.
SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
# The default: below the directory, no symlink anywhere on the way.
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
# Links are followed, but scoped to the directory as if it were "/".
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
# The xattrs a layer may carry (see layers.py): copied with the files.
COPIED_XATTRS = ("security.capability", "trusted.overlay.opaque")
_EAGAIN_RETRIES = 16
_CHUNK = 1 << 20


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


# syscall(2) returns a long: without it ctypes would read an int.
libc.syscall.restype = ctypes.c_long


# --------------------------------------------------------------- opening


def openat2(
    dir_fd: int, rel: str, flags: int, mode: int = 0, *, resolve: int = BENEATH,
    follow_last: bool = False,
) -> int:  # fmt: skip
    """``openat2(dir_fd, rel)``; always ``O_CLOEXEC``, and ``O_NOFOLLOW``
    unless ``follow_last`` (for :data:`IN_ROOT`, where every link resolves
    inside ``dir_fd`` anyway). A symlink on the way (``ELOOP``) or a name
    leaving ``dir_fd`` (``EXDEV``) raises :class:`UnsafePath`; other failures
    raise the usual ``OSError``."""
    flags |= os.O_CLOEXEC | (0 if follow_last else os.O_NOFOLLOW)
    how = _OpenHow(flags, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    path = os.fsencode(rel or ".")
    for _ in range(_EAGAIN_RETRIES):  # a rename elsewhere in the tree raced us
        fd = libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = get_errno()
        if err != errno.EAGAIN:
            break
    if err == errno.ELOOP:
        raise UnsafePath(f"{rel!r} goes through a symbolic link", path=rel)
    if err == errno.EXDEV:
        raise UnsafePath(f"{rel!r} leads outside its directory", path=rel)
    raise OSError(err, os.strerror(err), rel)


def open_dir(path: Path | str) -> int:
    """A directory the host made itself (a build's layer dir, a cache
    entry): the root every other call here works beneath."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


@contextlib.contextmanager
def opened_dir(path: Path | str) -> Iterator[int]:
    fd = open_dir(path)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def open_dir_beneath(dir_fd: int, rel: str, *, resolve: int = BENEATH) -> int:
    """An fd of the directory ``rel``; a link there (or on the way) raises
    :class:`UnsafePath`, a file ``NotADirectoryError``."""
    try:
        return openat2(dir_fd, rel, os.O_RDONLY | os.O_DIRECTORY, resolve=resolve)
    except NotADirectoryError:
        # O_NOFOLLOW|O_DIRECTORY on a link says ENOTDIR: tell the two apart.
        fd = openat2(dir_fd, rel, os.O_PATH, resolve=resolve)
        with closing(fd):
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise UnsafePath(f"{rel!r} is a symbolic link", path=rel) from None
        raise


def open_parent(dir_fd: int, rel: str, *, resolve: int = BENEATH) -> tuple[int, str]:
    """(an fd of ``rel``'s parent directory, ``rel``'s last name): calls on
    that name with ``dir_fd=`` and no-follow never leave the tree."""
    rel = _normal(rel)
    if rel == "":
        raise UnsafePath("the root of a tree has no parent here", path=rel)
    parent, name = posixpath.split(rel)
    return open_dir_beneath(dir_fd, parent or ".", resolve=resolve), name


def _normal(rel: str) -> str:
    rel = posixpath.normpath(rel.strip("/")) if rel.strip("/") else ""
    return "" if rel == "." else rel


# --------------------------------------------------------------- reading


def lstat(dir_fd: int, rel: str, *, resolve: int = BENEATH) -> os.stat_result | None:
    """``rel``'s own stat (a link is not followed), or None when it does not
    exist. A link or a non-directory on the way raises :class:`UnsafePath`
    (ELOOP) or ``NotADirectoryError``."""
    rel = _normal(rel)
    if rel == "":
        return os.fstat(dir_fd)
    try:
        parent, name = open_parent(dir_fd, rel, resolve=resolve)
    except FileNotFoundError:
        return None
    with closing(parent):
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None


def readlink(dir_fd: int, rel: str, *, resolve: int = BENEATH) -> str:
    parent, name = open_parent(dir_fd, rel, resolve=resolve)
    with closing(parent):
        return os.readlink(name, dir_fd=parent)


def list_dir(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    """The entries of an open directory with their own stat, sorted by the
    bytes of their names (a reproducible order)."""
    names = sorted(os.listdir(dir_fd), key=os.fsencode)
    return [(name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)) for name in names]


def read_bytes(dir_fd: int, rel: str, *, limit: int | None = None) -> bytes:
    fd = openat2(dir_fd, rel, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{rel!r} is not a regular file", path=rel)
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit)


def read_in_root(root_fd: int, path: str, *, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the regular file at ``path`` as a process
    whose root is ``root_fd`` sees it: links followed, but absolute targets
    start at that root and ``..`` stops there (``RESOLVE_IN_ROOT``), so an
    image's links never reach a host file. None when there is no regular
    file there (missing, a directory, a FIFO, a link loop)."""
    try:
        fd = openat2(
            root_fd, path.lstrip("/"), os.O_RDONLY | os.O_NONBLOCK, resolve=IN_ROOT,
            follow_last=True,
        )  # fmt: skip
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


# --------------------------------------------------------------- writing


def make_dirs(
    dir_fd: int,
    rel: str,
    *,
    mode: int = 0o755,
    on_create: Callable[[int, str], None] | None = None,
) -> int:
    """An fd of ``rel`` (made with its missing parents). ``on_create(fd,
    rel_so_far)`` runs on each directory made here (to set its owner and
    mode). Refuses a link or a file on the way: nothing is made through one."""
    fd = os.dup(dir_fd)
    done: list[str] = []
    try:
        for part in [p for p in _normal(rel).split("/") if p]:
            if part == "..":
                raise UnsafePath(f"{rel!r} climbs out of its directory", path=rel)
            made = False
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
            done.append(part)
            try:
                child = open_dir_beneath(fd, part)
            except NotADirectoryError as exc:
                raise UnsafePath(f"{'/'.join(done)!r} is not a directory", path=rel) from exc
            os.close(fd)
            fd = child
            if made and on_create is not None:
                on_create(fd, "/".join(done))
        return fd
    except BaseException:
        os.close(fd)
        raise


def remove(dir_fd: int, name: str) -> bool:
    """Remove ``name`` in ``dir_fd`` whatever it is; a directory with all it
    holds. Links are removed, never followed (the stdlib's fd-based rmtree
    opens each directory with O_NOFOLLOW and checks it is the one lstat saw).
    False when there was nothing."""
    _check_name(name)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return True


def remove_beneath(dir_fd: int, rel: str) -> bool:
    """Remove ``rel`` (see :func:`remove`); a link on the way to it raises
    :class:`UnsafePath`."""
    try:
        parent, name = open_parent(dir_fd, rel)
    except FileNotFoundError:
        return False
    with closing(parent):
        return remove(parent, name)


def remove_tree(path: Path | str) -> None:
    """Remove a directory the host made (a build or cache dir) and whatever
    a tenant left inside it, never following a link; nothing there is fine."""
    path = Path(path)
    try:
        parent = open_dir(path.parent)
    except FileNotFoundError:
        return
    with closing(parent):
        remove(parent, path.name)


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise UnsafePath(f"{name!r} is not a single name in a directory", path=name)


# --------------------------------------------------------------- copying


Owner = tuple[int, int]


def copy_tree(
    src_fd: int,
    dst_fd: int,
    *,
    owner: Owner | None = None,
    skip: Callable[[str], bool] | None = None,
) -> None:
    """Copy what ``src_fd`` holds into ``dst_fd``, merging with what is
    there. A later entry replaces an earlier one of another kind (tar's
    rule): a file or link where a directory comes is removed first, never
    written through. Links are copied as links, directories recursed into
    only when they are real ones on both sides. Owners are kept, or all set
    to ``owner``; modes, mtimes and the layer xattrs are kept. ``skip(rel)``
    leaves an entry (and what is below it) out."""
    _copy_dir_contents(src_fd, dst_fd, "", owner, skip)


def _copy_dir_contents(
    src_fd: int, dst_fd: int, rel: str, owner: Owner | None, skip: Callable[[str], bool] | None
) -> None:
    for name, st in list_dir(src_fd):
        sub = f"{rel}{name}"
        if skip is not None and skip(sub):
            continue
        copy_entry(src_fd, name, dst_fd, name, st=st, owner=owner, skip=skip, rel=sub)


def copy_entry(
    src_fd: int,
    src_name: str,
    dst_fd: int,
    dst_name: str,
    *,
    st: os.stat_result | None = None,
    owner: Owner | None = None,
    skip: Callable[[str], bool] | None = None,
    rel: str = "",
) -> None:
    """Copy the entry ``src_name`` of ``src_fd`` to ``dst_name`` in
    ``dst_fd`` (a directory with everything below it)."""
    _check_name(src_name)
    _check_name(dst_name)
    if st is None:
        st = os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
    mode = st.st_mode
    uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
    if stat.S_ISDIR(mode):
        _copy_dir(src_fd, src_name, dst_fd, dst_name, st, (uid, gid), owner, skip, rel)
        return
    if stat.S_ISREG(mode):
        remove(dst_fd, dst_name)
        _copy_file(src_fd, src_name, dst_fd, dst_name, st, (uid, gid))
        return
    if stat.S_ISLNK(mode):
        remove(dst_fd, dst_name)
        os.symlink(os.readlink(src_name, dir_fd=src_fd), dst_name, dir_fd=dst_fd)
    elif stat.S_ISFIFO(mode):
        remove(dst_fd, dst_name)
        os.mkfifo(dst_name, 0o600, dir_fd=dst_fd)
    elif stat.S_ISCHR(mode) and st.st_rdev == 0:  # an overlay whiteout
        remove(dst_fd, dst_name)
        os.mknod(dst_name, 0o600 | stat.S_IFCHR, 0, dir_fd=dst_fd)
    else:
        return  # devices and sockets come from the runtime, never from a tree
    os.chown(dst_name, uid, gid, dir_fd=dst_fd, follow_symlinks=False)
    if not stat.S_ISLNK(mode):  # (a fifo or node made just above, in our directory)
        os.chmod(dst_name, stat.S_IMODE(mode), dir_fd=dst_fd)
    os.utime(dst_name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)


def _copy_dir(
    src_fd: int,
    src_name: str,
    dst_fd: int,
    dst_name: str,
    st: os.stat_result,
    ids: Owner,
    owner: Owner | None,
    skip: Callable[[str], bool] | None,
    rel: str,
) -> None:
    there = _lstat_name(dst_fd, dst_name)
    if there is not None and not stat.S_ISDIR(there.st_mode):
        remove(dst_fd, dst_name)  # a file or a link: the directory replaces it
        there = None
    if there is None:
        os.mkdir(dst_name, 0o700, dir_fd=dst_fd)
    flags = os.O_RDONLY | os.O_DIRECTORY
    with (
        closing(openat2(src_fd, src_name, flags)) as sub_src,
        closing(openat2(dst_fd, dst_name, flags)) as sub_dst,
    ):
        _copy_dir_contents(sub_src, sub_dst, f"{rel}/" if rel else "", owner, skip)
        os.fchown(sub_dst, *ids)
        os.fchmod(sub_dst, stat.S_IMODE(st.st_mode))
        _copy_xattrs(sub_src, sub_dst)
        os.utime(sub_dst, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _copy_file(
    src_fd: int, src_name: str, dst_fd: int, dst_name: str, st: os.stat_result, ids: Owner
) -> None:
    src = openat2(src_fd, src_name, os.O_RDONLY | os.O_NONBLOCK)  # never block on a FIFO
    try:
        if not _same_inode(os.fstat(src), st):
            raise UnsafePath(f"{src_name!r} changed while it was copied", path=src_name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        dst = openat2(dst_fd, dst_name, flags, 0o600)
        try:
            _copy_bytes(src, dst, st.st_size)
            os.fchown(dst, *ids)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))  # after chown: chown clears setuid
            _copy_xattrs(src, dst)
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_bytes(src: int, dst: int, size: int) -> None:
    offset = 0
    while True:
        try:
            n = os.copy_file_range(src, dst, max(size - offset, _CHUNK))
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break
        if n == 0:
            return
        offset += n
    # copy_file_range refused (another filesystem on an old kernel): by hand.
    while chunk := os.pread(src, _CHUNK, offset):
        os.write(dst, chunk)
        offset += len(chunk)


def _copy_xattrs(src: int, dst: int) -> None:
    for name in COPIED_XATTRS:
        try:
            value = os.getxattr(src, name)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                continue
            raise
        os.setxattr(dst, name, value)


def _lstat_name(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ------------------------------------------------- archive member checks


def clean_member_name(name: str) -> str:
    """Normalise an archive member name to a relative POSIX path.

    Refuses absolute names and names that climb out with ``..``: both would
    write outside the destination.
    """
    if "\x00" in name:
        raise UnsafeArchive(f"entry {name!r} has a NUL byte in its name", entry=name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"entry {name!r} has an absolute path", entry=name)
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchive(f"entry {name!r} points outside the destination", entry=name)
    return "" if norm == "." else norm


def link_target_inside(dest: Path, member: str, target: str) -> bool:
    """True when a symlink at ``member`` pointing to ``target`` stays in ``dest``.

    Absolute targets are refused: an uploaded source tree has no root of its
    own, so ``/etc/passwd`` could only mean the host's.
    """
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return not (joined == ".." or joined.startswith("../"))
