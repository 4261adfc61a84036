"""Where runc finds a user-namespaced step's root and bind sources.

runc's init resolves the rootfs and every bind source inside the step's
user namespace, i.e. as the team range's root, an unprivileged host id.
The build tree, the caches and the secrets live under private directories
(0700, root's: issue 8 "host files are private"), which that id cannot
traverse. Rather than open those directories (to every range), each step
gets a gate: ``/run/paas-build-steps/<cid>/`` (the root 0711, the gate 0710
with the range's root group, so only this step's root passes), where the
step's overlay is mounted and each bind source is bind-mounted on the host
first. runc then only walks paths under the gate. :func:`close` unmounts
everything there and removes it; the reaper calls it too for a dead build.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from runtime_agent.host.errors import MountFailed
from runtime_agent.host.libc import get_errno, libc
from runtime_agent.oci import overlay
from runtime_agent.wire import IdRange

GATE_ROOT = Path("/run/paas-build-steps")
_MS_BIND, _MS_REC = 0x1000, 0x4000


def open_gate(cid: str, id_range: IdRange) -> Path:
    """The step's gate directory, made afresh (a leftover is closed first)."""
    GATE_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(GATE_ROOT, 0o711)
    gate = GATE_ROOT / cid
    close(cid)
    gate.mkdir(mode=0o710)
    os.chown(gate, 0, id_range.host_id)
    os.chmod(gate, 0o710)
    (gate / "m").mkdir(mode=0o755)
    return gate


def bind(gate: Path, source: Path, index: int) -> Path:
    """Bind-mount ``source`` (a platform-made path) at a place under ``gate``;
    runc takes it from there."""
    target = gate / "m" / str(index)
    if source.is_dir():
        target.mkdir()
    else:
        target.touch(mode=0o600)
    rc = libc.mount(os.fsencode(source), os.fsencode(target), None, _MS_BIND | _MS_REC, None)
    if rc != 0:
        err = get_errno()
        raise MountFailed(f"bind {source} at {target}: {os.strerror(err)}", target=str(target))
    return target


def close(cid: str) -> None:
    """Unmount everything under the gate of ``cid`` (deepest first) and
    remove it; nothing there is fine."""
    gate = GATE_ROOT / cid
    if not gate.exists():
        return
    for target in sorted(_mounts_under(gate), key=lambda p: -len(p.parts)):
        overlay.unmount(target)
    if _mounts_under(gate):
        # Never remove through a mount: that would delete in its source.
        raise MountFailed(f"{gate} still has mounts", target=str(gate))
    for entry in (gate / "m").iterdir() if (gate / "m").exists() else ():
        with contextlib.suppress(FileNotFoundError):
            entry.rmdir() if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for d in (gate / "m", gate / "rootfs", gate):
        with contextlib.suppress(FileNotFoundError):
            d.rmdir()


def _mounts_under(gate: Path) -> list[Path]:
    prefix = f"{gate}/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point.startswith(prefix):
                found.append(Path(point))
    return found


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
