"""Image layers: unpack untrusted layer tars into overlay lower dirs, and pack
a directory (a build's overlay upper) into a reproducible OCI layer.

On disk, a layer dir uses overlayfs' own encoding of deletions, so it can be
stacked as a lowerdir as is:

- OCI whiteout ``dir/.wh.name``  <->  character device 0/0 at ``dir/name``
- OCI opaque marker ``dir/.wh..wh..opq``  <->  xattr ``trusted.overlay.opaque=y``

Layer tars come from a registry: every entry is checked before anything is
written (no ``..``, no absolute names, no writing through links that leave
the layer dir, no device nodes) and files are opened with O_NOFOLLOW|O_EXCL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
import hashlib
import io
import logging
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from runtime_agent.host import safepath
from runtime_agent.host.errors import HostError, UnsafeArchive, UnsafePath
from runtime_agent.host.safepath import clean_member_name, link_target_inside
from runtime_agent.wire import IdRange

log = logging.getLogger("runtime_agent.layers")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# File capabilities (ping, ...) are the one xattr a layer may carry: others
# (trusted.overlay.* above all) would let a layer fake overlay metadata.
CAPABILITY_XATTR = "security.capability"
_PAX_XATTR = "SCHILY.xattr."
# Reproducible layers: every entry gets this mtime (1980-01-01, like
# buildpacks: some tools treat a 1970 mtime as "unset").
FIXED_MTIME = 315532800
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    digest: str  # sha256 of the compressed blob (the manifest's layer digest)
    diff_id: str  # sha256 of the uncompressed tar (the config's rootfs.diff_ids)
    size: int  # compressed size in bytes


# ---------------------------------------------------------------- unpacking


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on one layer, like the upload intake's (paas/builds/archive.py):
    a registry is not trusted to send a sane tar, and a layer bomb would
    fill the host's disk or memory before any digest check could catch it.
    Sizes are checked from each entry's header *before* anything is
    written; the ratio while the stream is decompressed."""

    max_bytes: int = 8 * 1024**3  # file content in total
    max_entry_bytes: int = 4 * 1024**3  # one file
    max_entries: int = 500_000
    max_header_bytes: int = 1024 * 1024  # one pax / GNU long-name header
    max_ratio: int = 200  # uncompressed / compressed
    ratio_grace_bytes: int = 1024 * 1024  # below this, any ratio (tiny layers)


@dataclass(frozen=True)
class _At:
    """An entry as a name in an open directory: the tree being packed is a
    build step's upper dir, shaped by the tenant, so nothing here walks a
    path (see safepath)."""

    dir_fd: int
    name: str

    def open(self, flags: int) -> int:
        return safepath.openat2(self.dir_fd, self.name, flags)


@dataclass(frozen=True)
class Unpacked:
    diff_id: str  # sha256 of the uncompressed tar, to check against the config
    file_bytes: int  # bytes of regular files written


def unpack_layer(
    tar_path: Path,
    dest_dir: Path,
    *,
    max_bytes: int | None = None,
    limits: UnpackLimits | None = None,
) -> Unpacked:
    """Unpack one layer tar (gzip or plain) into ``dest_dir``, which must be
    an empty directory, within ``limits`` (``max_bytes`` overrides theirs).

    Everything is written relative to a directory fd of ``dest_dir`` with
    no-follow semantics (see safepath): an entry's parents must be real
    directories made by the layer itself, never a link an earlier entry
    planted. Raises :class:`UnsafeArchive` on the first unsafe entry or
    exceeded cap; the caller throws the half-written dir away (see
    ``images.ImageStore``).
    """
    limits = limits or UnpackLimits()
    if max_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_bytes)
    dest = Path(os.path.realpath(dest_dir))
    if any(dest.iterdir()):
        raise UnsafeArchive(f"layer destination {dest} is not empty")
    written = entries = 0
    dir_times: list[tuple[str, int]] = []
    with open(tar_path, "rb") as raw, safepath.opened_dir(dest) as dest_fd:
        stream = _HashingReader(_decompressed(raw, tar_path), raw, limits)
        try:
            # A subclass per call: concurrent pulls may have other limits.
            capped = type(
                "CappedTarInfo", (_CappedTarInfo,), {"max_header_bytes": limits.max_header_bytes}
            )
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=capped) as tar:
                for member in tar:
                    entries += 1
                    if entries > limits.max_entries:
                        raise UnsafeArchive(f"layer has more than {limits.max_entries} entries")
                    _check_size(member, written, limits)
                    written += _unpack_entry(tar, member, dest_fd, dir_times)
            stream.drain()  # the zero padding after the end marker is hashed too
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise UnsafeArchive(f"layer {tar_path.name} is not a readable tar: {exc}") from exc
        # Directory mtimes last: creating their children changed them.
        for rel, mtime in reversed(dir_times):
            _set_dir_mtime(dest_fd, rel, mtime)
    return Unpacked(diff_id=stream.digest(), file_bytes=written)


def _set_dir_mtime(dest_fd: int, rel: str, mtime: int) -> None:
    try:
        fd = safepath.open_dir_beneath(dest_fd, rel)
    except (OSError, UnsafePath):
        return  # a later entry replaced it with something else
    with safepath.closing(fd):
        os.utime(fd, (mtime, mtime))


def _decompressed(raw: BinaryIO, tar_path: Path) -> BinaryIO:
    magic = raw.read(4)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if magic == b"\x28\xb5\x2f\xfd":
        raise UnsafeArchive(f"layer {tar_path.name} is zstd-compressed; only gzip is supported")
    return raw


def _check_size(m: tarfile.TarInfo, written: int, limits: UnpackLimits) -> None:
    """Refuse an entry by its declared size, before a byte of it is written."""
    if not m.isreg():
        return
    if m.size > limits.max_entry_bytes:
        raise UnsafeArchive(
            f"entry {m.name!r} is {m.size} bytes, over the {limits.max_entry_bytes}-byte limit",
            entry=m.name,
        )
    if written + m.size > limits.max_bytes:
        raise UnsafeArchive(f"layer unpacks to more than {limits.max_bytes} bytes", entry=m.name)


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses an oversized pax or GNU long-name header before
    tarfile reads it into memory whole."""

    max_header_bytes = UnpackLimits.max_header_bytes
    _HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)  # fmt: skip

    def _proc_member(self, tarfile: tarfile.TarFile) -> Any:
        if self.type in self._HEADERS and self.size > self.max_header_bytes:
            raise UnsafeArchive(
                f"a tar header of {self.size} bytes is over the {self.max_header_bytes}-byte limit"
            )
        return super()._proc_member(tarfile)  # type: ignore[misc]


class _HashingReader(io.RawIOBase):
    """Reads from ``src`` while hashing what was read (the layer's diff_id),
    and stops a stream that inflates beyond the ratio cap (``raw`` is the
    compressed file under ``src``)."""

    def __init__(self, src: BinaryIO, raw: BinaryIO, limits: UnpackLimits) -> None:
        self._src = src
        self._raw = raw
        self._limits = limits
        self._hash = hashlib.sha256()
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._src.read(len(buf))
        n = len(data)
        buf[:n] = data
        self._hash.update(data)
        self._total += n
        if self._total > self._limits.ratio_grace_bytes and self._src is not self._raw:
            packed = max(self._raw.tell(), 1)
            if self._total > self._limits.max_ratio * packed:
                raise UnsafeArchive(
                    f"layer inflates more than {self._limits.max_ratio} times (a compression bomb?)"
                )
        return n

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _unpack_entry(
    tar: tarfile.TarFile, m: tarfile.TarInfo, dest_fd: int, dir_times: list[tuple[str, int]]
) -> int:
    """One entry; OS errors name the entry (and the ones only a malformed
    archive causes are reported as such)."""
    try:
        return _unpack_member(tar, m, dest_fd, dir_times)
    except UnsafeArchive:
        raise
    except UnsafePath as exc:
        raise UnsafeArchive(f"entry {m.name!r}: {exc.message}", entry=m.name) from exc
    except OSError as exc:
        if exc.errno in _ARCHIVE_ERRNOS:
            msg = f"entry {m.name!r} cannot be unpacked: {exc}"
            raise UnsafeArchive(msg, entry=m.name) from exc
        raise HostError(f"unpacking entry {m.name!r} failed: {exc}", entry=m.name) from exc


# Errors a well-formed layer never causes (a name too long, a file where a
# directory must be, a symlink loop); anything else (ENOSPC, EIO) is the host's.
_ARCHIVE_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EEXIST}


def _unpack_member(
    tar: tarfile.TarFile, m: tarfile.TarInfo, dest_fd: int, dir_times: list[tuple[str, int]]
) -> int:
    rel = clean_member_name(m.name)
    if rel == "":
        return 0  # the layer root itself: the store owns its mode
    base = posixpath.basename(rel)
    if base == OPAQUE_MARKER:
        _mark_opaque(dest_fd, posixpath.dirname(rel))
        return 0
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(dest_fd, rel, base[len(WHITEOUT_PREFIX) :])
        return 0
    if m.ischr() and m.devmajor == 0 and m.devminor == 0:
        with _target(dest_fd, rel) as at:
            _make_whiteout_node(at)  # already in overlay form
        return 0
    if m.ischr() or m.isblk():
        raise UnsafeArchive(f"entry {m.name!r} is a device node", entry=m.name)
    with _target(dest_fd, rel) as at:
        if m.isdir():
            _make_dir(at, m)
            dir_times.append((rel, int(m.mtime)))
            return 0
        safepath.remove(at.dir_fd, at.name)  # a later entry replaces an earlier one
        if m.isreg():
            return _write_file(tar, m, at)
        if m.issym():
            _make_symlink(rel, m, at)
        elif m.islnk():
            _make_hardlink(dest_fd, m, at)
        elif m.isfifo():
            os.mkfifo(at.name, 0o600, dir_fd=at.dir_fd)
            _set_owner_mode(at, m)
        else:
            raise UnsafeArchive(
                f"entry {m.name!r} has an unsupported type {m.type!r}", entry=m.name
            )
    return 0


@contextlib.contextmanager
def _target(dest_fd: int, rel: str) -> Iterator[_At]:
    """``rel``'s parent (made if missing) and name. Every parent must be a
    real directory: a link or a file an earlier entry put on the way is
    refused, whatever it points at."""
    parent, name = posixpath.split(rel)
    try:
        fd = safepath.make_dirs(dest_fd, parent)
    except UnsafePath as exc:
        raise UnsafeArchive(
            f"entry {rel!r} would be written through a link or a file: {exc.message}", entry=rel
        ) from None
    with safepath.closing(fd):
        yield _At(fd, name)


def _whiteout(dest_fd: int, rel: str, hidden: str) -> None:
    if hidden in ("", ".", "..") or "/" in hidden:
        raise UnsafeArchive(f"whiteout {rel!r} names no file", entry=rel)
    with _target(dest_fd, posixpath.join(posixpath.dirname(rel), hidden)) as at:
        # The OCI spec: a whiteout hides lower layers only, never an entry of
        # its own layer. Overlay cannot show both, so the layer's own entry wins.
        if _lstat(at) is not None:
            return
        _make_whiteout_node(at)


def _make_whiteout_node(at: _At) -> None:
    safepath.remove(at.dir_fd, at.name)
    os.mknod(at.name, 0o600 | stat.S_IFCHR, os.makedev(0, 0), dir_fd=at.dir_fd)


def _mark_opaque(dest_fd: int, rel_dir: str) -> None:
    if rel_dir == "":
        # An opaque root would hide every lower layer: overlay cannot mark its
        # own lower root, and no sane image needs it.
        raise UnsafeArchive("an opaque marker at the layer root is not supported")
    with _target(dest_fd, rel_dir) as at:
        st = _lstat(at)
        if st is None or not stat.S_ISDIR(st.st_mode):
            safepath.remove(at.dir_fd, at.name)
            os.mkdir(at.name, 0o755, dir_fd=at.dir_fd)
        with safepath.closing(at.open(os.O_RDONLY | os.O_DIRECTORY)) as fd:
            os.setxattr(fd, OPAQUE_XATTR, b"y")


def _lstat(at: _At) -> os.stat_result | None:
    try:
        return os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _make_dir(at: _At, m: tarfile.TarInfo) -> None:
    st = _lstat(at)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        safepath.remove(at.dir_fd, at.name)
        st = None
    if st is None:
        os.mkdir(at.name, 0o700, dir_fd=at.dir_fd)
    _set_owner_mode(at, m)


def _write_file(tar: tarfile.TarFile, m: tarfile.TarInfo, at: _At) -> int:
    src = tar.extractfile(m)
    assert src is not None  # regular members always have content
    fd = safepath.openat2(at.dir_fd, at.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
        _apply_xattrs(out.fileno(), m)
        _chown(out.fileno(), m)
        os.fchmod(out.fileno(), m.mode & 0o7777)  # after chown: chown clears setuid
        os.utime(out.fileno(), (m.mtime, m.mtime))
    return m.size


def _make_symlink(rel: str, m: tarfile.TarInfo, at: _At) -> None:
    # Absolute targets are fine: the container resolves them inside its own
    # root (debootstrap makes plenty). A relative target that climbs above
    # the layer root points at the host while the layer sits on the host.
    if not m.linkname.startswith("/") and not link_target_inside(Path(), rel, m.linkname):
        raise UnsafeArchive(
            f"symlink {m.name!r} -> {m.linkname!r} points outside the layer", entry=m.name
        )
    os.symlink(m.linkname, at.name, dir_fd=at.dir_fd)
    _chown(at, m)
    os.utime(at.name, (m.mtime, m.mtime), dir_fd=at.dir_fd, follow_symlinks=False)


def _make_hardlink(dest_fd: int, m: tarfile.TarInfo, at: _At) -> None:
    # Hard links name another entry of the same archive, by a path of real
    # directories (no link on the way), and never follow a symlink at its
    # end (linkat without AT_SYMLINK_FOLLOW): no host file can be linked in.
    target_rel = clean_member_name(m.linkname)
    if target_rel == "":
        raise UnsafeArchive(f"hard link {m.name!r} points at the layer root", entry=m.name)
    try:
        src_dir, src_name = safepath.open_parent(dest_fd, target_rel)
    except UnsafePath as exc:
        raise UnsafeArchive(
            f"hard link {m.name!r} -> {m.linkname!r} goes through a link: {exc.message}",
            entry=m.name,
        ) from None
    except (FileNotFoundError, NotADirectoryError):
        src_dir, src_name = -1, ""
    with contextlib.ExitStack() as stack:
        if src_dir >= 0:
            stack.callback(os.close, src_dir)
        st = _lstat(_At(src_dir, src_name)) if src_dir >= 0 else None
        if st is None:
            raise UnsafeArchive(
                f"hard link {m.name!r} -> {m.linkname!r} names no earlier entry", entry=m.name
            )
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(f"hard link {m.name!r} points at a directory", entry=m.name)
        os.link(src_name, at.name, src_dir_fd=src_dir, dst_dir_fd=at.dir_fd, follow_symlinks=False)


def _set_owner_mode(at: _At, m: tarfile.TarInfo) -> None:
    _chown(at, m)
    os.chmod(at.name, m.mode & 0o7777, dir_fd=at.dir_fd, follow_symlinks=False)


def _chown(target: _At | int, m: tarfile.TarInfo) -> None:
    try:
        if isinstance(target, int):
            os.fchown(target, m.uid, m.gid)
        else:
            os.chown(target.name, m.uid, m.gid, dir_fd=target.dir_fd, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise  # as root this is a real failure, not a rootless run


def _apply_xattrs(fd: int, m: tarfile.TarInfo) -> None:
    for key, value in m.pax_headers.items():
        if key == _PAX_XATTR + CAPABILITY_XATTR:
            os.setxattr(fd, CAPABILITY_XATTR, value.encode("utf-8", "surrogateescape"))


# ------------------------------------------------------------------ packing


def pack_layer(
    src_dir: Path,
    out_path: Path,
    *,
    from_overlay_upper: bool = True,
    compresslevel: int = 6,
    mtime: int = FIXED_MTIME,
    id_range: IdRange | None = None,
) -> LayerInfo:
    """Write ``src_dir`` as a gzip layer tar to ``out_path``.

    With ``id_range``, ``src_dir`` was written by a process in that user
    namespace (a build step: its files are on disk owned by the range's host
    ids): owners are recorded as the container saw them (host id - first id
    of the range), so the image is the same as one built without a user
    namespace and works unchanged in Docker and in the agent. An id outside
    the range (the container saw it as the overflow id) is recorded as that.

    Reproducible: entries sorted by name, one fixed mtime, numeric owners
    only, gzip header without name or time; the same tree gives the same
    digest. With ``from_overlay_upper``, overlay whiteouts (char 0/0) become
    ``.wh.`` entries and opaque dirs get ``.wh..wh..opq``. Device nodes,
    sockets and xattrs other than file capabilities are left out.
    """
    src = Path(src_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with open(tmp, "wb") as raw:
        blob = _HashingWriter(raw)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=blob, compresslevel=compresslevel, mtime=0
        ) as gz:
            diff = _HashingWriter(gz)
            with (
                _ShiftingTar.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT) as tar,
                safepath.opened_dir(src) as src_fd,
            ):
                assert isinstance(tar, _ShiftingTar)
                tar.id_range = id_range
                seen: dict[tuple[int, int], str] = {}
                for rel, dir_fd, name, st in _walk_sorted(src_fd, "", os.fstat(src_fd).st_dev):
                    _pack_entry(tar, rel, _At(dir_fd, name), st, from_overlay_upper, mtime, seen)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, out_path)
    return LayerInfo(digest=blob.digest(), diff_id=diff.digest(), size=blob.size)


OVERFLOW_ID = 65534  # what a user namespace shows for an unmapped id


class _ShiftingTar(tarfile.TarFile):
    """A tar writer that records owners shifted out of a user namespace's
    range back into the container's view (see :func:`pack_layer`)."""

    id_range: IdRange | None = None

    def addfile(self, tarinfo: tarfile.TarInfo, fileobj: Any = None) -> None:
        if self.id_range is not None:
            tarinfo.uid = to_container_id(tarinfo.uid, self.id_range)
            tarinfo.gid = to_container_id(tarinfo.gid, self.id_range)
            key = _PAX_XATTR + CAPABILITY_XATTR
            if key in tarinfo.pax_headers:
                raw = tarinfo.pax_headers[key].encode("utf-8", "surrogateescape")
                caps = _caps_outside_userns(raw, self.id_range)
                tarinfo.pax_headers = {
                    **tarinfo.pax_headers,
                    key: caps.decode("utf-8", "surrogateescape"),
                }
        super().addfile(tarinfo, fileobj)


_VFS_CAP_V3, _VFS_CAP_V2, _VFS_CAP_REVISION_MASK = 0x03000000, 0x02000000, 0xFF000000


def _caps_outside_userns(raw: bytes, id_range: IdRange) -> bytes:
    """File capabilities set inside a user namespace are stored as v3 with
    the namespace's root host id; an image carries them as v2 (no root id),
    as a file setcap'd by real root would be. Anything else stays."""
    if len(raw) != 24:
        return raw
    magic, rootid = struct.unpack("<I", raw[:4])[0], struct.unpack("<I", raw[20:])[0]
    if magic & _VFS_CAP_REVISION_MASK != _VFS_CAP_V3 or rootid != id_range.host_id:
        return raw
    flags = magic & ~_VFS_CAP_REVISION_MASK
    return struct.pack("<I", _VFS_CAP_V2 | flags) + raw[4:20]


def to_container_id(host_id: int, id_range: IdRange) -> int:
    """The id a process in ``id_range``'s user namespace sees for ``host_id``."""
    inside = host_id - id_range.host_id
    return inside if 0 <= inside < id_range.size else OVERFLOW_ID


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _HashingWriter(io.RawIOBase):
    """Passes bytes on to ``sink`` while hashing and counting them."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _walk_sorted(
    dir_fd: int, rel_dir: str, device: int
) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """Every entry under ``dir_fd`` (not itself), depth first, siblings in
    byte order of their names (like GNU tar --sort=name); never follows
    symlinks, never descends into another filesystem (a rootfs may still
    have /proc mounted: its mount point is packed, not its contents).
    Yields (path in the layer, its directory's fd, its name, its lstat)."""
    for name, st in safepath.list_dir(dir_fd):
        rel = f"{rel_dir}{name}"
        yield rel, dir_fd, name, st
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev == device:
                with safepath.closing(safepath.open_dir_beneath(dir_fd, name)) as child:
                    yield from _walk_sorted(child, rel + "/", device)
            else:
                log.info("not descending into %s: another filesystem is mounted there", rel)


def _pack_entry(
    tar: tarfile.TarFile,
    rel: str,
    at: _At,
    st: os.stat_result,
    from_upper: bool,
    mtime: int,
    seen: dict[tuple[int, int], str],
) -> None:
    mode = st.st_mode
    if stat.S_ISCHR(mode) and st.st_rdev == 0 and from_upper:
        parent, name = posixpath.split(rel)
        tar.addfile(_info(posixpath.join(parent, WHITEOUT_PREFIX + name), st, mtime, 0o600))
        return
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        log.info("leaving %s out of the layer: devices and sockets come from the runtime", rel)
        return
    info = _info(rel, st, mtime, stat.S_IMODE(mode))
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        if from_upper:
            with safepath.closing(at.open(os.O_RDONLY | os.O_DIRECTORY)) as fd:
                opaque = _xattr(fd, OPAQUE_XATTR) == b"y"
            if opaque:
                tar.addfile(_info(f"{rel}/{OPAQUE_MARKER}", st, mtime, 0o600))
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(at.name, dir_fd=at.dir_fd)
        tar.addfile(info)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif stat.S_ISREG(mode):
        _pack_file(tar, info, at, st, seen)


def _pack_file(
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    at: _At,
    st: os.stat_result,
    seen: dict[tuple[int, int], str],
) -> None:
    # Hard-linked inodes: the first name (in sorted order) carries the
    # content, later names become links to it. Only names inside this tree
    # are ever link targets: an inode shared with a file outside it is
    # packed as a plain file.
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            info.type = tarfile.LNKTYPE
            info.linkname = seen[key]
            tar.addfile(info)
            return
        seen[key] = info.name
    with os.fdopen(at.open(os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        now = os.fstat(f.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafePath(f"{info.name!r} changed while the layer was packed", path=info.name)
        cap = _xattr(f.fileno(), CAPABILITY_XATTR)
        if cap is not None:
            info.pax_headers = {
                _PAX_XATTR + CAPABILITY_XATTR: cap.decode("utf-8", "surrogateescape")
            }
        info.size = st.st_size
        tar.addfile(info, f)


def _info(name: str, st: os.stat_result, mtime: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""  # numeric owners: names differ between hosts
    info.mtime = mtime
    return info


def _xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise
