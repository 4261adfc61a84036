"""Pulled layers mounted as a real overlay: deletions in upper layers hide
lower files, and an upper dir packs back into a layer that does the same."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from runtime_agent.host.errors import MountFailed
from runtime_agent.images.layers import pack_layer
from runtime_agent.images.store import ImageStore
from runtime_agent.oci import overlay
from tests.support.images import image_config, pack_dirs, push_image
from tests.support.registry import TestRegistry

pytestmark = pytest.mark.root


@pytest.fixture
def mounted(tmp_agent_root: Path):
    """Mount points to unmount at the end whatever happens."""
    points: list[Path] = []
    yield points
    for p in reversed(points):
        overlay.unmount(p)
    assert not any(overlay.is_mounted(p) for p in points)


def rootfs_dirs(root: Path, name: str) -> tuple[Path, Path, Path]:
    upper, work, target = root / f"{name}-u", root / f"{name}-w", root / f"{name}-m"
    for d in (upper, work, target):
        d.mkdir()
    return upper, work, target


def push_layered_image(registry: TestRegistry, workdir: Path) -> str:
    """base: etc/motd, var/cache/{a,b}, keep/x; top: deletes motd (whiteout)
    and replaces var/cache by an opaque dir holding only 'new'."""
    base, top = workdir / "base", workdir / "top"
    for d in ("etc", "var/cache", "keep"):
        (base / d).mkdir(parents=True)
    (base / "etc/motd").write_text("welcome\n")
    (base / "etc/hostname").write_text("base\n")
    (base / "var/cache/a").write_text("a")
    (base / "var/cache/b").write_text("b")
    (base / "keep/x").write_text("x")
    (top / "etc").mkdir(parents=True)
    (top / "var/cache").mkdir(parents=True)
    (top / "etc/.wh.motd").write_text("")  # OCI spelling, packed as is
    (top / "var/cache/.wh..wh..opq").write_text("")
    (top / "var/cache/new").write_text("new")
    layers = pack_dirs(workdir, [base, top])
    # The OCI names really are in the second tar.
    with tarfile.open(layers[1][0]) as tar:
        assert {"etc/.wh.motd", "var/cache/.wh..wh..opq"} <= set(tar.getnames())
    repo = f"test/layered-{os.getpid()}-{workdir.name}"
    with registry.client() as client:
        push_image(client, repo, "v1", layers, image_config([i.diff_id for _, i in layers]))
    return f"{registry.host}/{repo}:v1"


def test_whiteouts_and_opaque_dirs_hide_lower_files_in_the_mounted_rootfs(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path, mounted: list[Path]
):
    store = ImageStore(tmp_agent_root / "s", registry.credentials, ca_file=str(registry.ca_file))
    image = store.pull(push_layered_image(registry, tmp_path))
    upper, work, rootfs = rootfs_dirs(tmp_agent_root, "c1")
    overlay.mount(store.lower_dirs(image), upper, work, rootfs)
    mounted.append(rootfs)

    assert overlay.is_mounted(rootfs)
    assert not (rootfs / "etc/motd").exists()
    assert (rootfs / "etc/hostname").read_text() == "base\n"
    assert sorted(os.listdir(rootfs / "var/cache")) == ["new"]
    assert (rootfs / "keep/x").read_text() == "x"
    # Writes land in the container's upper dir, never in a shared layer.
    (rootfs / "keep/y").write_text("y")
    assert (upper / "keep/y").exists()
    assert not any((d / "keep/y").exists() for d in store.lower_dirs(image))


def test_an_upper_dir_packs_into_a_layer_with_the_same_deletions(
    tmp_agent_root: Path, registry: TestRegistry, tmp_path: Path, mounted: list[Path]
):
    store = ImageStore(tmp_agent_root / "s", registry.credentials, ca_file=str(registry.ca_file))
    image = store.pull(push_layered_image(registry, tmp_path))
    lowers = store.lower_dirs(image)
    upper, work, rootfs = rootfs_dirs(tmp_agent_root, "b1")
    overlay.mount(lowers, upper, work, rootfs)
    mounted.append(rootfs)
    # What a build step does: delete a file, replace a whole dir, add one.
    (rootfs / "keep/x").unlink()
    for name in os.listdir(rootfs / "etc"):
        os.unlink(rootfs / "etc" / name)
    os.rmdir(rootfs / "etc")
    (rootfs / "etc").mkdir()
    (rootfs / "etc/fresh").write_text("fresh\n")
    overlay.unmount(rootfs)
    mounted.remove(rootfs)

    blob = tmp_path / "step.tgz"
    info = pack_layer(upper, blob)
    with tarfile.open(blob) as tar:
        names = set(tar.getnames())
    assert {"keep/.wh.x", "etc/.wh..wh..opq", "etc/fresh"} <= names

    # Stacked on the image, the new layer shows the same world.
    new_lower = store.import_layer(blob, info)
    _, _, view = rootfs_dirs(tmp_agent_root, "v1")
    overlay.mount([new_lower, *lowers], upper=None, work=None, target=view)
    mounted.append(view)
    assert not (view / "keep/x").exists()
    assert os.listdir(view / "etc") == ["fresh"]
    assert sorted(os.listdir(view / "var/cache")) == ["new"]


def test_many_layers_mount_beyond_the_one_page_option_limit(
    tmp_agent_root: Path, mounted: list[Path]
):
    # 70 layers with long names: ~7 KB of lowerdir, over mount(2)'s 4096.
    lowers = []
    for i in range(70):
        d = tmp_agent_root / ("layer-with-a-deliberately-long-name-" + "x" * 60 + f"-{i:03}")
        d.mkdir()
        (d / "which").write_text(str(i))
        lowers.append(d)
    upper, work, target = rootfs_dirs(tmp_agent_root, "many")
    with pytest.raises(MountFailed, match="4096-byte"):
        overlay._mount_classic(lowers, upper, work, target)
    overlay.mount(lowers, upper, work, target)
    mounted.append(target)
    assert (target / "which").read_text() == "0"  # the first lower is the top


def test_the_classic_mount_gives_the_same_view(tmp_agent_root: Path, mounted: list[Path]):
    low1, low2 = tmp_agent_root / "l1", tmp_agent_root / "l2"
    low1.mkdir()
    low2.mkdir()
    (low1 / "f").write_text("bottom")
    (low2 / "f").write_text("top")
    upper, work, target = rootfs_dirs(tmp_agent_root, "classic")
    overlay._mount_classic([low2, low1], upper, work, target)
    mounted.append(target)
    assert (target / "f").read_text() == "top"


def test_a_failed_mount_names_the_step_and_the_error(tmp_agent_root: Path):
    upper, work, target = rootfs_dirs(tmp_agent_root, "bad")
    with pytest.raises(MountFailed) as err:
        overlay.mount([tmp_agent_root / "missing"], upper, work, target)
    assert "missing" in err.value.message
    assert "ENOENT" in err.value.message
    assert not overlay.is_mounted(target)


def test_unmount_is_idempotent(tmp_agent_root: Path):
    low = tmp_agent_root / "low"
    low.mkdir()
    upper, work, target = rootfs_dirs(tmp_agent_root, "idem")
    overlay.mount([low], upper, work, target)
    overlay.unmount(target)
    overlay.unmount(target)  # not mounted any more: fine
    assert not overlay.is_mounted(target)
