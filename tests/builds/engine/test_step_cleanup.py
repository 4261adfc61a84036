"""The clean-up after a RUN step (mount points dropped, only the kept paths
left) on upper directories a hostile step shaped at random: links to the
host in place of kept paths, their parents and mount points. No runc needed:
the clean-up is host code on a tree, which is what these tests attack."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from paas.builds.engine.plan import BindMount, RunStep
from paas.builds.engine.steps import _drop_mountpoints, _keep_only

KEEP = ("app/.venv",)
MOUNTS = ("/var/cache/paas/pip", "/workspace", "/var/lib/paas/deps")
SHAPED = ["app", "app/.venv", "var", "var/cache", "var/cache/paas", "var/cache/paas/pip",
          "etc", "etc/hosts", "workspace", "tmp"]  # fmt: skip


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            body = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_nlink, st.st_mtime_ns, body)
    return out


def real_dirs_to(root: Path, path: Path) -> bool:
    while path != root:
        if path.is_symlink() or not path.is_dir():
            return False
        path = path.parent
    return True


@pytest.mark.parametrize("seed", range(30))
def test_cleanup_of_a_randomly_shaped_upper_never_reaches_the_host(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    host = tmp_path / "host"
    for name in ("app", ".venv", "pip", "hosts", "cache", "paas"):
        (host / name).mkdir(parents=True)
        (host / name / "keep-me").write_text("host\n")
    (host / "hosts" / "keep-me").unlink()  # an empty dir named like a mount point
    before = snapshot(host)
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    upper = tmp_path / "upper"
    upper.mkdir()
    targets = [str(host), str(host / "app"), "../" * 10 + str(host).lstrip("/"), str(host / "pip")]
    for rel in SHAPED:
        path = upper / rel
        if not real_dirs_to(upper, path.parent) or os.path.lexists(path):
            continue  # (the test itself must not write through the links it made)
        kind = rng.choice(["dir", "dir", "link", "file", "absent"])
        if kind == "dir":
            path.mkdir()
            (path / f"made-{seed}").write_text("tenant\n")
        elif kind == "link":
            path.symlink_to(rng.choice(targets))
        elif kind == "file":
            path.write_text("tenant\n")
    step = RunStep(
        name="install", argv=["true"], keep=KEEP,
        mounts=[BindMount(tmp_path, m) for m in MOUNTS],
    )  # fmt: skip
    _drop_mountpoints(upper, [lower], step)
    _keep_only(upper, KEEP)
    assert snapshot(host) == before
    # What is left: the kept path (as the step left it) and its real parents.
    left = sorted(
        os.path.relpath(os.path.join(d, n), upper)
        for d, dirs, files in os.walk(upper)
        for n in dirs + files
    )
    assert all(p == "app" or p == "app/.venv" or p.startswith("app/.venv/") for p in left), left
