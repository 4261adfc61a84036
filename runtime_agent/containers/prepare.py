"""Preparing a container on the host and tearing it down again: the image's
layers under an overlay rootfs, a network namespace with its address and
published ports, the /etc files, the OCI bundle; and launching its process
with one ``runc run --detach`` into its log files.

Blocking calls throughout (runc, mount, netlink, image pulls): the manager
runs them in threads. Every step is idempotent, so an interrupted prepare
or teardown is finished by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.containers import isolation
from runtime_agent.containers.logs import open_raw_fds
from runtime_agent.containers.records import ContainerRecord, Store
from runtime_agent.host.errors import HostError, InvalidRequest, NotFound
from runtime_agent.host.failpoints import failpoint
from runtime_agent.net import sandbox
from runtime_agent.net.bridge import HostNetwork, write_etc_files
from runtime_agent.oci import rootfs, spec
from runtime_agent.oci.runc import Runc

log = logging.getLogger("runtime_agent.containers")


class Image(Protocol):
    """What the manager reads of a pulled image (read-only, like images.Image)."""

    @property
    def digest(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...


class Images(Protocol):
    """What the manager needs from :class:`images.ImageStore` (blocking calls)."""

    def pull(
        self, ref: str, *, refresh: bool = True, auth: wire.RegistryAuth | None = None
    ) -> Image: ...
    def lower_dirs(self, image: Any) -> list[Path]: ...


# --- the image config and the request, Docker-style ------------------------------


def resolve_args(image_config: dict[str, Any], req: wire.CreateContainer) -> list[str]:
    """Entrypoint + cmd as Docker computes them: an entrypoint given in the request
    drops the image's Cmd (it was written for the image's entrypoint)."""
    cfg = image_config.get("config") or {}
    if req.entrypoint is not None:
        entrypoint, cmd = list(req.entrypoint), list(req.cmd or [])
    else:
        entrypoint = list(cfg.get("Entrypoint") or [])
        cmd = list(req.cmd) if req.cmd is not None else list(cfg.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidRequest("neither the request nor the image gives a command", field="cmd")
    return args


def merge_env(image_config: dict[str, Any], req: wire.CreateContainer) -> dict[str, str]:
    """The image's Env, overridden key by key by the request's."""
    env: dict[str, str] = {}
    for item in (image_config.get("config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    env.update(req.env)
    return env


def hostname_for(req: wire.CreateContainer) -> str:
    """The request's hostname, else the name made host-name-safe ('_' is not)."""
    return req.hostname or req.name.replace("_", "-").strip(".-")[:63] or "container"


class Preparer:
    """Everything a container holds on the host outside its records."""

    def __init__(
        self,
        images: Images,
        network: HostNetwork,
        runc: Runc,
        store: Store,
        cgroup_prefix: str,
        config: AgentConfig,
    ) -> None:
        self.config = config  # the defaults a request leaves to the agent (isolation.py)
        self.images = images
        self.network = network
        self.runc = runc
        self.store = store
        self._cgroup_prefix = cgroup_prefix

    def cgroups_path(self, name: str) -> str:
        return f"/{self._cgroup_prefix}-{name}"

    async def prepare(self, rec: ContainerRecord, auth: wire.RegistryAuth | None = None) -> None:
        """Pull the image and mount the rootfs, and meanwhile plumb the network
        (neither needs the other), then write the bundle. On failure the
        caller tears down whatever was done."""
        results = await asyncio.gather(
            asyncio.to_thread(self._prepare_rootfs, rec, auth),
            asyncio.to_thread(self._plumb_network, rec),
            return_exceptions=True,
        )
        # gather waited for both: a teardown never races a step still running.
        for result in results:
            if isinstance(result, BaseException):
                raise result
        image = results[0]
        assert not isinstance(image, BaseException)
        await asyncio.to_thread(self._write_bundle, rec, image.config)
        rec.prepared = True

    def _prepare_rootfs(self, rec: ContainerRecord, auth: wire.RegistryAuth | None) -> Image:
        # No refresh: a digest (what the control plane sends) or a tag pulled
        # before is used as stored, like Docker's "missing" pull policy; with
        # a credential the registry is asked anyway (see ImageStore.pull).
        image = self.images.pull(rec.request.image, refresh=False, auth=auth)
        rec.image_digest = image.digest
        rec.lowers = [str(p) for p in self.images.lower_dirs(image)]
        self._mount_rootfs(rec)
        return image

    def _ensure_runtime(self, rec: ContainerRecord) -> None:
        """Rootfs mounted and network plumbed: already true unless the host
        rebooted (mounts and netns do not survive that), so launches stay fast."""
        if not os.path.ismount(self.store.container_dir(rec.name) / "rootfs"):
            self._mount_rootfs(rec)
        userns_path = isolation.userns_path_for(rec.netns_path)
        if not (rec.netns_path and userns_path and os.path.exists(userns_path)):
            self._plumb_network(rec)

    def _mount_rootfs(self, rec: ContainerRecord) -> None:
        req = rec.request
        rootfs.mount(
            self.store.container_dir(rec.name),
            [Path(p) for p in rec.lowers],
            isolation.id_range_for(req, self.config),
            isolation.limits_for(req, self.config).writable_bytes or 0,
        )

    def _plumb_network(self, rec: ContainerRecord) -> None:
        """Netns, veth, address, /etc files and published ports (idempotent)."""
        req = rec.request
        id_range = isolation.id_range_for(req, self.config)
        att = self.network.attach(rec.name, list(req.ports), req.network_group, id_range)
        rec.address, rec.netns_path = att.address, att.netns_path
        sandbox.seal(att.netns_path)
        write_etc_files(self.store.container_dir(rec.name) / "etc", hostname_for(req), att.address)

    def _write_bundle(self, rec: ContainerRecord, image_config: dict[str, Any]) -> None:
        req = rec.request
        cdir = self.store.container_dir(rec.name)
        cfg = image_config.get("config") or {}
        uid, gid, groups = spec.resolve_user(cdir / "rootfs", req.user or cfg.get("User") or None)
        document = spec.build_spec(
            rootfs=cdir / "rootfs",
            args=resolve_args(image_config, req),
            env=merge_env(image_config, req),
            cwd=req.working_dir or cfg.get("WorkingDir") or "/",
            uid=uid,
            gid=gid,
            additional_gids=groups,
            hostname=hostname_for(req),
            netns_path=rec.netns_path,
            mounts=[
                spec.Mount("/etc/hosts", cdir / "etc" / "hosts"),
                spec.Mount("/etc/resolv.conf", cdir / "etc" / "resolv.conf"),
            ],
            limits=isolation.cgroup_limits(isolation.limits_for(req, self.config)),
            cgroups_path=self.cgroups_path(rec.name),
            id_range=isolation.id_range_for(req, self.config),
            userns_path=isolation.userns_path_for(rec.netns_path),
        )
        (cdir / "bundle").mkdir(exist_ok=True)
        (cdir / "bundle" / "config.json").write_text(json.dumps(document))

    def launch(self, rec: ContainerRecord) -> int:
        # One thread hop for both: each hop costs a wake-up of the event loop.
        self._ensure_runtime(rec)
        failpoint("launch.before", rec.name)  # recorded as starting, no runc state yet
        pid = self._run_process(rec)
        failpoint("launch.after", rec.name)  # running under runc, not yet recorded as such
        return pid

    def _run_process(self, rec: ContainerRecord) -> int:
        cdir = self.store.container_dir(rec.name)
        state_dir = self.runc.root / rec.name
        if state_dir.exists():
            # A stopped leftover (e.g. from before a host reboot) blocks the id.
            # Checked first: a runc call costs as much as the run itself.
            with contextlib.suppress(NotFound):
                self.runc.delete(rec.name, force=True)
        out, err = open_raw_fds(cdir / "logs")
        try:
            return self.runc.run_detached(
                rec.name,
                cdir / "bundle",
                stdout_fd=out,
                stderr_fd=err,
                pid_file=cdir / "bundle" / "pid",
            )
        except BaseException:
            # runc removes a container it failed to start; should it have
            # left one behind anyway, the next start must not find it.
            if state_dir.exists():
                with contextlib.suppress(Exception):
                    self.runc.delete(rec.name, force=True)
            raise
        finally:
            os.close(out)
            os.close(err)

    def teardown(self, rec: ContainerRecord) -> None:
        name, cdir = rec.name, self.store.container_dir(rec.name)
        for step in (
            lambda: self.runc.delete(name, force=True),
            lambda: self.network.detach(name),
            lambda: rootfs.unmount(cdir),
        ):
            try:
                step()
            except NotFound:
                pass
            except Exception:
                log.exception("removing %s: a cleanup step failed", name)
        if rootfs.any_mounted(cdir):
            # Never delete through a mount: that would delete inside the overlay.
            raise HostError(f"cannot remove {name}: its rootfs is still mounted", name=name)
        if cdir.exists():
            self.store.delete(name)
