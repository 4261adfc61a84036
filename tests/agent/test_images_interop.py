"""Interoperability with independent OCI tools (skopeo, umoci from Debian):
what we push they read, what they build we run, and both sides see the same
root filesystem, whiteouts included."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from runtime_agent.host.cmd import run
from runtime_agent.images.store import ImageStore
from runtime_agent.oci import overlay
from tests.support.images import BuiltImage, image_config, pack_dirs, push_image
from tests.support.registry import TestRegistry

# skopeo and umoci come from scripts/test's package list.
pytestmark = pytest.mark.root


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Type, mode, owner and content (or link target) of every entry."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                what: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


def tls_args(registry: TestRegistry, work: Path, direction: str) -> list[str]:
    certs = work / "certs"
    if not certs.exists():
        certs.mkdir(parents=True)
        assert registry.ca_file
        shutil.copy(registry.ca_file, certs / "ca.crt")
    return [
        f"--{direction}-cert-dir",
        str(certs),
        f"--{direction}-creds",
        f"{registry.username}:{registry.password}",
    ]


def umoci_rootfs(registry: TestRegistry, ref: str, work: Path) -> Path:
    """skopeo copies ``ref`` into an OCI layout, umoci unpacks it."""
    layout = work / "layout"
    run(["skopeo", "copy", *tls_args(registry, work, "src"), f"docker://{ref}", f"oci:{layout}:x"])
    run(["umoci", "unpack", "--image", f"{layout}:x", str(work / "bundle")])
    return work / "bundle" / "rootfs"


@pytest.fixture
def our_rootfs(tmp_agent_root: Path, registry: TestRegistry):
    """Pull with our store and mount read-only; unmounted afterwards."""
    targets: list[Path] = []

    def mount(ref: str) -> Path:
        store = ImageStore(
            tmp_agent_root / "store", registry.credentials, ca_file=str(registry.ca_file)
        )
        target = tmp_agent_root / f"m{len(targets)}"
        target.mkdir()
        overlay.mount(store.lower_dirs(store.pull(ref)), None, None, target)
        targets.append(target)
        return target

    yield mount
    for t in targets:
        overlay.unmount(t)


def test_umoci_unpacks_our_image_to_the_rootfs_we_mount(
    registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path, our_rootfs
):
    theirs = umoci_rootfs(registry, busybox_image.ref, tmp_path)
    ours = our_rootfs(busybox_image.ref)
    assert tree_listing(ours) == tree_listing(theirs)
    assert (theirs / "www/index.html").read_text() == busybox_image.index_body


def test_umoci_and_we_agree_on_whiteouts_and_opaque_dirs(
    registry: TestRegistry, tmp_path: Path, our_rootfs
):
    base, top = tmp_path / "base", tmp_path / "top"
    for d in ("etc", "var/cache/sub", "opt/app"):
        (base / d).mkdir(parents=True)
    for f in ("etc/motd", "etc/keep", "var/cache/a", "var/cache/sub/b", "opt/app/x"):
        (base / f).write_text(f)
    (top / "etc").mkdir(parents=True)
    (top / "var/cache").mkdir(parents=True)
    (top / "etc/.wh.motd").write_text("")
    (top / ".wh.opt").write_text("")  # a whole directory deleted
    (top / "var/cache/.wh..wh..opq").write_text("")
    (top / "var/cache/new").write_text("new")
    layers = pack_dirs(tmp_path, [base, top])
    repo = f"test/whiteouts-{tmp_path.name.lower()}"
    with registry.client() as client:
        push_image(client, repo, "v1", layers, image_config([i.diff_id for _, i in layers]))
    ref = f"{registry.host}/{repo}:v1"

    theirs = umoci_rootfs(registry, ref, tmp_path / "umoci")
    ours = our_rootfs(ref)
    assert tree_listing(ours) == tree_listing(theirs)
    assert sorted(os.listdir(ours / "var/cache")) == ["new"]
    assert not (ours / "opt").exists() and not (ours / "etc/motd").exists()


def test_we_run_an_image_umoci_built_with_deletions(
    registry: TestRegistry, busybox_image: BuiltImage, tmp_path: Path, our_rootfs
):
    # umoci builds on our busybox image: one layer deleting and adding files.
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    src = busybox_image.ref
    run(
        [
            "skopeo",
            "copy",
            *tls_args(registry, tmp_path, "src"),
            f"docker://{src}",
            f"oci:{layout}:base",
        ]
    )
    run(["umoci", "unpack", "--image", f"{layout}:base", str(bundle)])
    rootfs = bundle / "rootfs"
    (rootfs / "www/index.html").unlink()
    (rootfs / "www/other.html").write_text("from umoci\n")
    shutil.rmtree(rootfs / "var")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    run(["umoci", "repack", "--image", f"{layout}:v2", str(bundle)])
    repo = busybox_image.repository + "-umoci"
    dest = f"docker://{registry.host}/{repo}:v2"
    run(["skopeo", "copy", *tls_args(registry, tmp_path, "dest"), f"oci:{layout}:v2", dest])

    ours = our_rootfs(f"{registry.host}/{repo}:v2")
    assert not (ours / "www/index.html").exists()
    assert (ours / "www/other.html").read_text() == "from umoci\n"
    assert not (ours / "var").exists()
    assert (ours / "etc/passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert tree_listing(ours) == tree_listing(rootfs)
