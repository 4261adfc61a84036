"""Safe extraction of uploaded source archives (.tar, .tar.gz/.tgz, .zip).

An upload is untrusted input. Extraction writes every entry itself (never
``TarFile.extractall``) so that each rule is ours and visible here:

- an entry lands inside the destination or the archive is refused: no ``..``,
  no absolute paths or drive letters, no writing through a symlink, symlinks
  and hardlinks must point inside, no device files, FIFOs or sockets, no
  entry twice;
- size, entry count and compression ratio are capped while the bytes flow,
  counting what is actually produced rather than what headers claim, so a
  bomb stops after a few megabytes instead of filling the disk;
- permissions keep the executable bit and drop setuid, setgid and sticky;
  nothing is ever chowned;
- everything is unpacked into a temporary directory beside the destination
  and renamed into place only on success, so a refused archive leaves
  nothing behind.

This module is free of Django: the build task passes the limits in.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from paas.core.errors import PaasError
from paas.core.failpoints import failpoint
from runtime_agent.host import errors as host_errors
from runtime_agent.host import safepath
from runtime_agent.host.safepath import link_target_inside

ACCEPTED_FORMATS = ".tar, .tar.gz/.tgz or .zip"

_CHUNK = 64 * 1024
# tarfile reads a pax or GNU long-name header into memory in one go; a real
# one is a few hundred bytes, so anything bigger is an attempt to exhaust memory.
_MAX_HEADER_READ = 1024 * 1024
# Room for the headers and padding around each entry of a tar stream.
_HEADER_ALLOWANCE = 8 * 1024
_MAX_LINK_TARGET = 4096
_MAX_LINK_HOPS = 40  # the kernel's own limit
# Disk trouble is the platform's problem, not the archive's: let it through.
_INFRA_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}
# Formats people upload by mistake, named so the message can say what it is.
_OTHER_MAGIC = {
    b"BZh": "a bzip2 file",
    b"\xfd7zXZ\x00": "an xz file",
    b"\x28\xb5\x2f\xfd": "a zstd file",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
}


class ArchiveFormat(enum.Enum):
    TAR = "tar"
    TAR_GZ = "tar.gz"
    ZIP = "zip"


class UnsafeArchive(PaasError):
    """An entry tried to escape the destination, or the archive broke a rule."""

    code = "unsafe_archive"
    status = 422


class ArchiveError(UnsafeArchive):
    """The upload is not an archive we accept, or it is damaged."""

    code = "invalid_archive"


class ArchiveTooLarge(UnsafeArchive):
    """The archive holds more bytes or entries, or expands more, than allowed."""

    code = "archive_too_large"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what one archive may unpack to.

    ``max_ratio`` compares the bytes the archive expands to with its size on
    disk; it is judged only past ``ratio_grace_bytes``, so a tiny archive of
    very repetitive text is not mistaken for a bomb.
    """

    max_total_bytes: int = 1024**3
    max_files: int = 20_000
    max_ratio: int = 200
    max_entry_bytes: int | None = None
    ratio_grace_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_total_bytes", "max_files", "max_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"ArchiveLimits.{name} must be at least 1")
        if self.max_entry_bytes is not None and self.max_entry_bytes < 1:
            raise ValueError("ArchiveLimits.max_entry_bytes must be at least 1 or None")
        if self.ratio_grace_bytes < 0:
            raise ValueError("ArchiveLimits.ratio_grace_bytes must not be negative")


@dataclass(frozen=True)
class ExtractSummary:
    files: int
    dirs: int
    symlinks: int
    total_bytes: int
    # The single directory that wrapped everything (e.g. "app-main") and was
    # removed so the app's files sit at the destination's root; None if not.
    stripped_top_level: str | None


# --- format detection ----------------------------------------------------------


def detect_format(path: Path, filename: str) -> ArchiveFormat:
    """Tell the archive's format from its first bytes; the name may lie."""
    with open(path, "rb") as fh:
        head = fh.read(tarfile.BLOCKSIZE)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ArchiveFormat.ZIP
    if head.startswith(b"\x1f\x8b"):
        if _is_tar_header(_gunzip_head(path, filename)):
            return ArchiveFormat.TAR_GZ
        raise ArchiveError(
            f"{filename!r} is gzip-compressed but holds no tar archive; "
            f"upload a {ACCEPTED_FORMATS} file.",
            filename=filename,
        )
    if _is_tar_header(head):
        return ArchiveFormat.TAR
    what = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
    raise ArchiveError(
        f"{filename!r} is {what or 'not an archive we can read'}; "
        f"upload a {ACCEPTED_FORMATS} file.",
        filename=filename,
    )


def _gunzip_head(path: Path, filename: str) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(tarfile.BLOCKSIZE)
    except (OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(
            f"{filename!r} is a damaged gzip file: {exc}", filename=filename
        ) from None


def _is_tar_header(block: bytes) -> bool:
    """A tar header block carries a checksum of itself; garbage almost never
    matches it, and old (pre-POSIX) tars have no other magic to look for."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    field_ = block[148:156].replace(b"\x00", b" ").strip()
    try:
        stored = int(field_, 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:512]
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return stored in (sum(rest), signed)


# --- limits --------------------------------------------------------------------


@dataclass
class _Budget:
    """Counts entries and bytes as they are produced and stops at a cap."""

    limits: ArchiveLimits
    compressed_bytes: int
    label: str
    entries: int = 0
    written: int = 0  # file contents written to disk
    expanded: int = 0  # bytes the decompressor produced (headers included for tar)
    current: str = ""
    entry_written: int = 0

    def enter(self, name: str) -> None:
        self.current = name
        self.entry_written = 0
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise self.too_large(f"the archive has more than {self.limits.max_files} entries")

    def expect(self, size: int) -> None:
        """Refuse early when the header already admits too much (it may also
        understate: the bytes are counted again as they are written)."""
        self._check(self.written + size, self.entry_written + size)

    def write(self, n: int) -> None:
        self.written += n
        self.entry_written += n
        self._check(self.written, self.entry_written)

    def expand(self, n: int) -> None:
        self.expanded += n
        grace = self.limits.ratio_grace_bytes
        if self.expanded > max(grace, self.limits.max_ratio * self.compressed_bytes):
            raise self.too_large(
                f"{self.label!r} expands to more than {self.limits.max_ratio} times its size; "
                f"it looks like a zip bomb"
            )
        stream_cap = self.limits.max_total_bytes + self.limits.max_files * _HEADER_ALLOWANCE
        if self.expanded > stream_cap:
            raise self.too_large(f"the archive holds more than {stream_cap} bytes")

    def _check(self, total: int, entry: int) -> None:
        cap = self.limits.max_entry_bytes
        if cap is not None and entry > cap:
            raise self.too_large(f"the file is larger than the limit of {cap} bytes")
        if total > self.limits.max_total_bytes:
            raise self.too_large(
                f"the archive holds more than {self.limits.max_total_bytes} bytes once extracted"
            )

    def too_large(self, why: str) -> ArchiveTooLarge:
        where = f" (stopped at entry {self.current!r})" if self.current else ""
        return ArchiveTooLarge(f"{why}{where}.", entry=self.current, bytes_written=self.written)


# --- a format-neutral view of the entries ---------------------------------------


class _Kind(enum.Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    SPECIAL = "special"


def _no_chunks() -> Iterator[bytes]:
    return iter(())


@dataclass
class _Member:
    name: str
    kind: _Kind
    mode: int = 0o644
    size: int = 0
    link: str = ""  # symlink target, or the member a hardlink points to
    what: str = ""  # for SPECIAL: "a device file", "a FIFO"...
    chunks: Callable[[], Iterator[bytes]] = _no_chunks


def _members(path: Path, fmt: ArchiveFormat, budget: _Budget) -> Generator[_Member, None, None]:
    if fmt is ArchiveFormat.ZIP:
        return _zip_members(path, budget)
    return _tar_members(path, fmt is ArchiveFormat.TAR_GZ, budget)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _TarStream:
    """The (decompressed) tar stream as tarfile sees it, forward only.

    Every byte tarfile pulls goes through here and is counted, so headers,
    padding and skipped data count toward the caps too.
    """

    def __init__(self, raw: _Readable, budget: _Budget) -> None:
        self.raw = raw
        self.budget = budget
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > _MAX_HEADER_READ:
            # Our own reads are small chunks: only a header can ask for more.
            raise self.budget.too_large(f"a tar header is larger than {_MAX_HEADER_READ} bytes")
        data = self.raw.read(size)
        self.pos += len(data)
        self.budget.expand(len(data))
        return data

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or pos < self.pos:
            raise ArchiveError("the tar stream cannot be read in order", entry=self.budget.current)
        while self.pos < pos and self.read(min(_CHUNK, pos - self.pos)):
            pass
        return self.pos


def _tar_members(path: Path, gz: bool, budget: _Budget) -> Generator[_Member, None, None]:
    with open(path, "rb") as raw:
        plain: _Readable = gzip.GzipFile(fileobj=raw) if gz else raw
        stream = _TarStream(plain, budget)
        with tarfile.open(fileobj=stream, mode="r:") as tf:  # type: ignore[call-overload]
            for info in tf:
                yield _tar_member(tf, info)


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo) -> _Member:
    def chunks() -> Iterator[bytes]:
        fh = tf.extractfile(info)
        assert fh is not None  # a regular file always has contents
        with fh:
            while chunk := fh.read(_CHUNK):
                yield chunk

    if info.isreg():
        return _Member(info.name, _Kind.FILE, info.mode, info.size, chunks=chunks)
    if info.isdir():
        return _Member(info.name, _Kind.DIR, info.mode)
    if info.issym():
        return _Member(info.name, _Kind.SYMLINK, link=info.linkname)
    if info.islnk():
        return _Member(info.name, _Kind.HARDLINK, link=info.linkname)
    if info.ischr() or info.isblk():
        return _Member(info.name, _Kind.SPECIAL, what="a device file")
    if info.isfifo():
        return _Member(info.name, _Kind.SPECIAL, what="a FIFO")
    return _Member(info.name, _Kind.SPECIAL, what=f"of unsupported tar type {info.type!r}")


def _zip_members(path: Path, budget: _Budget) -> Generator[_Member, None, None]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_files:
            raise ArchiveTooLarge(
                f"the archive has more than {budget.limits.max_files} entries.",
                entry="",
                bytes_written=0,
            )
        for info in infos:
            yield _zip_member(zf, info, budget)


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> _Member:
    # Zips made on Windows may separate with backslashes: read them as
    # separators so "..\\x" is seen for the climb it is.
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    if info.flag_bits & 0x1:
        raise ArchiveError(
            f"entry {name!r} is encrypted; upload an archive without a password", entry=name
        )

    def chunks() -> Iterator[bytes]:
        with zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                budget.expand(len(chunk))
                yield chunk

    if info.is_dir() or stat.S_ISDIR(mode):
        return _Member(name, _Kind.DIR, stat.S_IMODE(mode) or 0o755)
    if stat.S_ISLNK(mode):
        return _Member(name, _Kind.SYMLINK, link=_zip_link_target(name, chunks()))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return _Member(name, _Kind.SPECIAL, what="a device file")
    if stat.S_ISFIFO(mode):
        return _Member(name, _Kind.SPECIAL, what="a FIFO")
    if stat.S_ISSOCK(mode):
        return _Member(name, _Kind.SPECIAL, what="a socket")
    return _Member(name, _Kind.FILE, stat.S_IMODE(mode) or 0o644, info.file_size, chunks=chunks)


def _zip_link_target(name: str, chunks: Iterator[bytes]) -> str:
    data = b""
    for chunk in chunks:
        data += chunk
        if len(data) > _MAX_LINK_TARGET:
            raise ArchiveError(f"symlink {name!r} has an overlong target", entry=name)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ArchiveError(f"symlink {name!r} has a target that is not UTF-8", entry=name) from None


# --- writing -------------------------------------------------------------------


class _Writer:
    """Creates the entries under ``root``, one rule at a time."""

    def __init__(self, root: Path, budget: _Budget) -> None:
        self.root = root
        self.budget = budget
        self.seen: dict[str, _Kind] = {}
        self.links: list[tuple[str, Path]] = []
        self.files = self.dirs = 0

    def add(self, member: _Member) -> None:
        name = clean_member_name(member.name)
        if not name:
            if member.kind is _Kind.DIR:
                return  # "./" names the root itself
            raise UnsafeArchive(f"entry {member.name!r} has no name", entry=member.name)
        if member.kind is _Kind.SPECIAL:
            raise UnsafeArchive(
                f"entry {name!r} is {member.what}; a source archive may only hold "
                f"files, directories and links",
                entry=name,
            )
        if name.split("/", 1)[0] == "__MACOSX":
            return  # Finder's resource forks, never part of the app
        if name in self.seen:
            raise UnsafeArchive(f"entry {name!r} appears twice in the archive", entry=name)
        self.seen[name] = member.kind
        target = self._parent(name) / posixpath.basename(name)
        try:
            self._create(name, target, member)
        except FileExistsError:
            raise UnsafeArchive(
                f"entry {name!r} clashes with an earlier entry at the same path", entry=name
            ) from None
        except OSError as exc:
            if exc.errno in _INFRA_ERRNOS:
                raise
            raise ArchiveError(
                f"entry {name!r} cannot be written: {exc.strerror}", entry=name
            ) from None

    def _create(self, name: str, target: Path, member: _Member) -> None:
        if member.kind is _Kind.FILE:
            self._file(target, member)
        elif member.kind is _Kind.DIR:
            self._dir(target, member.mode)
        elif member.kind is _Kind.SYMLINK:
            self._symlink(name, target, member.link)
        else:
            self._hardlink(name, target, member.link)

    def _parent(self, name: str) -> Path:
        """Make the entry's parent directories, refusing to pass through any
        symlink: an earlier entry may have planted one to redirect writes."""
        current = self.root
        for part in name.split("/")[:-1]:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                self.dirs += 1
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(
                    f"entry {name!r} would be written through the symlink "
                    f"{str(current.relative_to(self.root))!r}",
                    entry=name,
                )
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeArchive(
                    f"entry {name!r} needs {str(current.relative_to(self.root))!r} "
                    f"to be a directory, but an earlier entry made it a file",
                    entry=name,
                )
        return current

    def _file(self, target: Path, member: _Member) -> None:
        self.budget.expect(member.size)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in member.chunks():
                self.budget.write(len(chunk))
                out.write(chunk)
            # Keep rwx as archived (the executable bit matters), drop setuid,
            # setgid and sticky; the owner can always read and write.
            os.fchmod(out.fileno(), (member.mode & 0o777) | 0o600)
        self.files += 1

    def _dir(self, target: Path, mode: int) -> None:
        try:
            os.mkdir(target, 0o755)
        except FileExistsError:
            # Made earlier as the parent of a file; a real directory is fine.
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                raise
        else:
            self.dirs += 1
        os.chmod(target, (mode & 0o777) | 0o700)

    def _symlink(self, name: str, target: Path, link: str) -> None:
        if not link or "\x00" in link or not link_target_inside(self.root, name, link):
            raise UnsafeArchive(
                f"symlink {name!r} points outside the archive (to {link!r})", entry=name
            )
        os.symlink(link, target)
        self.links.append((name, target))
        self.check_link(self.root, name, target)

    def check_link(self, root: Path, name: str, target: Path, why: str = "") -> None:
        if not _link_stays_beneath(root, str(target.relative_to(root))):
            raise UnsafeArchive(
                f"symlink {name!r} points outside the archive (to {os.readlink(target)!r}){why}",
                entry=name,
            )

    def _hardlink(self, name: str, target: Path, link: str) -> None:
        try:
            source = clean_member_name(link)
        except UnsafeArchive:
            raise UnsafeArchive(
                f"hardlink {name!r} points outside the archive (to {link!r})", entry=name
            ) from None
        # Only to a file already extracted: a hardlink to a symlink would be a
        # second symlink whose relative target means something else here.
        if self.seen.get(source) not in (_Kind.FILE, _Kind.HARDLINK):
            raise UnsafeArchive(
                f"hardlink {name!r} points to {link!r}, which is not a file earlier in the archive",
                entry=name,
            )
        # By directory fd, no link on the way and none followed at the end.
        with safepath.opened_dir(self.root) as root_fd:
            try:
                parent, src_name = safepath.open_parent(root_fd, source)
            except host_errors.UnsafePath as exc:
                raise UnsafeArchive(
                    f"hardlink {name!r} -> {link!r} goes through a link: {exc.message}", entry=name
                ) from None
            with safepath.closing(parent):
                os.link(src_name, target, src_dir_fd=parent, follow_symlinks=False)
        self.files += 1


def clean_member_name(name: str) -> str:
    """The toolkit's name check, refusing with this module's error."""
    with _refusals_as_ours():
        return safepath.clean_member_name(name)


@contextlib.contextmanager
def _refusals_as_ours() -> Iterator[None]:
    # The control plane's callers catch PaasError; the toolkit's own error
    # family stays on its side of the line.
    try:
        yield
    except host_errors.UnsafeArchive as exc:
        raise UnsafeArchive(exc.message, **exc.data) from None


def _link_stays_beneath(root: Path, rel: str) -> bool:
    """Follow the symlink at ``rel`` as the kernel would, with ``root`` as a
    floor: any step above it (even one that comes back down, like
    ``../app/x``), an absolute target or a loop counts as leaving.

    The text of one target is not enough: ``b -> ..`` then ``c -> b/..`` both
    read as inside, yet ``c`` is the root's parent. Judging every step also
    keeps the answer true wherever the tree is moved later.
    """
    parts = rel.split("/")[:-1]
    pending = [posixpath.basename(rel)]  # start by following the link itself
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return False
            parts.pop()
            continue
        here = root.joinpath(*parts, part)
        if not here.is_symlink():
            parts.append(part)
            continue
        hops += 1
        target = os.readlink(here)
        if hops > _MAX_LINK_HOPS or target.startswith("/"):
            return False
        pending = target.split("/") + pending
    return True


# --- the whole thing ------------------------------------------------------------


def extract_archive(
    path: Path,
    dest: Path,
    *,
    limits: ArchiveLimits,
    log: Callable[[str], None] | None = None,
    filename: str | None = None,
) -> ExtractSummary:
    """Unpack the archive at ``path`` into ``dest`` (absent or empty).

    ``filename`` is the name the person uploaded, used in messages (the
    stored file's own name means nothing to them).

    Raises :class:`UnsafeArchive` (or :class:`ArchiveError` /
    :class:`ArchiveTooLarge`) naming the offending entry; then ``dest`` is
    left as it was and nothing was written anywhere else.
    """
    say = log or (lambda _line: None)
    label = filename or path.name
    fmt = detect_format(path, label)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    say(f"Extracting {label} ({fmt.value}, {path.stat().st_size} bytes)")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        budget = _Budget(limits, max(1, path.stat().st_size), label)
        writer = _Writer(staging, budget)
        _unpack(path, fmt, budget, writer)
        failpoint("build.extract")  # written to staging, not yet in place
        root, stripped = _app_root(staging)
        # Links are judged again once all exist (a later link can change
        # where an earlier one leads) and against the root the app will have.
        why = " once the top-level directory is removed" if stripped else ""
        for name, link in writer.links:
            writer.check_link(root, name, link, why)
        os.chmod(root, 0o755)
        os.rename(root, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if stripped:
        os.rmdir(staging)
        say(f"Removed the top-level directory {stripped}/ that wrapped everything")
    summary = ExtractSummary(
        writer.files, writer.dirs - bool(stripped), len(writer.links), budget.written, stripped
    )
    say(
        f"Extracted {summary.files} files, {summary.dirs} directories and "
        f"{summary.symlinks} symlinks ({summary.total_bytes} bytes)"
    )
    return summary


def _unpack(path: Path, fmt: ArchiveFormat, budget: _Budget, writer: _Writer) -> None:
    """Feed every entry to the writer, turning a damaged archive into an
    error that names where it broke."""
    try:
        with contextlib.closing(_members(path, fmt, budget)) as members:
            for member in members:
                budget.enter(member.name)
                writer.add(member)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        where = f" near entry {budget.current!r}" if budget.current else ""
        raise ArchiveError(
            f"{budget.label!r} is damaged or truncated{where}: {exc}", entry=budget.current
        ) from None
    except NotImplementedError as exc:
        # zipfile: a compression method Python cannot read (deflate64...).
        raise ArchiveError(
            f"entry {budget.current!r} cannot be read: {exc}", entry=budget.current
        ) from None


def _app_root(staging: Path) -> tuple[Path, str | None]:
    """The directory that becomes the app: the staging directory itself, or
    the one directory inside it when everything is wrapped (GitHub's
    ``app-main/``)."""
    entries = list(staging.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0], entries[0].name
    return staging, None
