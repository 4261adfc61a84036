"""A small ext4 filesystem on a loop device, for tests that fill a disk.

    with loop_filesystem(tmp_path / "disk", size_mib=64) as mountpoint:
        ...   # mountpoint is empty, root-owned, on its own small filesystem

Unmounted (and its loop device released, ``-o loop`` sets autoclear) at the
end, even when the test failed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def loop_filesystem(base: Path, *, size_mib: int) -> Iterator[Path]:
    base.mkdir(parents=True, exist_ok=True)
    image, mountpoint = base / "fs.img", base / "mnt"
    with open(image, "wb") as fh:
        fh.truncate(size_mib * 1024 * 1024)
    # No reserved blocks: root (the builder) and the tenant see the same free space.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mountpoint.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
        mountpoint.rmdir()
        os.unlink(image)


def fill(path: Path, *, leave_bytes: int = 0) -> Path:
    """Write zeros into ``path``/filler until the filesystem has at most
    ``leave_bytes`` free (root writes: reserved blocks are off)."""
    filler = path / "filler"
    st = os.statvfs(path)
    size = max(0, st.f_bavail * st.f_frsize - leave_bytes)
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1024 * 1024)
        while size > 0:
            try:
                size -= fh.write(chunk[: min(size, len(chunk))])
            except OSError:
                break  # full before the count said so (metadata blocks)
    return filler
