"""The entry point: turn an extracted source directory into an image in the
registry. Django-free; the Celery task calls :func:`build_image` and turns
its result or :class:`BuildFailed` into the Build record.

Order of work: detect -> read the Procfile -> pull the base (the stack or
the Dockerfile's FROM) -> plan -> run the steps, each making one layer ->
push blobs -> push the manifest under its tags (last: nothing half-built is
ever tagged) -> prune old versions."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paas.builds.engine import ids, publish
from paas.builds.engine.buildpacks import node, python, static
from paas.builds.engine.buildpacks.common import DEFAULT_PORT, BuildpackInput
from paas.builds.engine.cache import LayerCache
from paas.builds.engine.config import BuildConfig
from paas.builds.engine.detect import AppKind, detect
from paas.builds.engine.diskspace import DISK_ERRNOS, out_of_space
from paas.builds.engine.dockerfile import BaseImage, parse_dockerfile, read_dockerfile
from paas.builds.engine.errors import BuildCancelled, BuildFailed
from paas.builds.engine.files import materialize_copy
from paas.builds.engine.housekeeping import mark_gc_needed, registry_push_lock
from paas.builds.engine.outbound import trust_env, trust_mounts, write_secrets
from paas.builds.engine.plan import BuildPlan, CopyStep, RunStep
from paas.builds.engine.procfile import read_procfile
from paas.builds.engine.reaper import new_build_dir
from paas.builds.engine.redact import RedactingLog, url_secrets
from paas.builds.engine.source import hash_parts, source_digest
from paas.builds.engine.steps import StepEnv, run_step
from paas.builds.engine.tenant import ANONYMOUS, Tenant, base_allowed, scoped_config
from runtime_agent.host import safepath
from runtime_agent.host.errors import HostError, ImageNotFound
from runtime_agent.images.layers import LayerInfo, pack_layer
from runtime_agent.images.manifests import Image
from runtime_agent.images.refs import ImageRef
from runtime_agent.images.registry import OCI_MANIFEST, RegistryClient
from runtime_agent.images.store import ImageStore
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.net.policy import PolicySettings
from runtime_agent.oci.runc import Runc, check_runtime_safe
from runtime_agent.wire import IdRange

# Part of every reuse key: bump when the engine's output changes.
ENGINE_VERSION = "1"
LABEL_PREFIX = "paas."
REUSE_TAG_PREFIX = "build-"
BUILDPACKS = {AppKind.PYTHON: python.plan, AppKind.NODE: node.plan, AppKind.STATIC: static.plan}


@dataclass(frozen=True)
class StepRecord:
    name: str
    command: str
    duration_s: float
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    image_ref: str  # "<registry>/<app>:v<version>"
    digest: str  # manifest digest: "<registry>/<app>@<digest>" pins it
    size: int  # bytes: config + compressed layers
    kind: str
    process_types: dict[str, str]
    steps: list[StepRecord] = field(default_factory=list)
    duration_s: float = 0.0
    reused: bool = False  # an identical earlier build's image, tagged again

    @property
    def digest_ref(self) -> str:
        return f"{self.image_ref.rsplit(':', 1)[0]}@{self.digest}"


@dataclass
class _Base:
    image: Image
    settings: BaseImage
    repo: str


def build_image(
    *,
    source_dir: Path,
    app: str,
    build_id: str,
    version: int,
    config: BuildConfig,
    log: Callable[[str], None],
    secrets: Mapping[str, str] | Sequence[str] = (),
    cancel: threading.Event | None = None,
    tenant: Tenant = ANONYMOUS,
) -> BuildResult:
    """Build ``source_dir`` as ``<registry>/<app>:v<version>``; every log line
    goes to ``log`` with secret values masked. ``secrets`` maps names to
    values (files under /run/secrets in every RUN step); a plain list of
    values is only masked. Setting ``cancel`` (from another thread) kills the
    running step and ends the build with :class:`BuildCancelled`; everything
    it made is removed. ``tenant`` scopes what FROM may name and which caches
    the build reads and writes (see tenant.py). Raises :class:`BuildFailed`."""
    started = time.monotonic()
    config = scoped_config(config, tenant)
    files = dict(secrets) if isinstance(secrets, Mapping) else {}
    say = RedactingLog(log, _masked_values(config, secrets))
    client = config.registry.client()
    store = ImageStore(config.images_dir, **_store_kwargs(config))
    work = config.work_dir / f"build-{uuid.uuid4().hex[:12]}"
    try:
        with new_build_dir(work):
            build = _Build(
                source_dir, app, build_id, version, config, say, work, client, store, tenant,
                files, cancel or threading.Event(),
            )  # fmt: skip
            result = build.run()
        return replace(result, duration_s=time.monotonic() - started)
    except BuildCancelled:
        say("-----> build cancelled: the running step was stopped, its files removed")
        raise
    except BuildFailed as exc:
        # The message and command end up in the Build record: mask them too.
        full = out_of_space(config.work_dir)
        failed = BuildFailed(
            say.redact(f"{exc.message}: {full}" if full else exc.message),
            step=say.redact(exc.step),
            command=say.redact(exc.command),
            exit_code=exc.exit_code,
        )
        say(f"build failed: {failed}")
        raise failed from exc
    except HostError as exc:
        say(f"build failed: {exc.message}")
        raise BuildFailed(say.redact(exc.message), step="build") from exc
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        full = out_of_space(config.work_dir) or f"out of disk space on the build host ({exc})"
        say(f"build failed: {full}")
        raise BuildFailed(full, step="build") from exc
    finally:
        store.close()
        client.close()
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Build:
    """One build's context, so the steps below need not pass ten arguments."""

    source_dir: Path
    app: str
    build_id: str
    version: int
    config: BuildConfig
    say: RedactingLog
    work: Path
    client: RegistryClient
    store: ImageStore
    tenant: Tenant
    secrets: dict[str, str] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)

    def check_cancelled(self, where: str) -> None:
        if self.cancel.is_set():
            raise BuildCancelled(step=where)

    @property
    def tag(self) -> str:
        return f"v{self.version}"

    @property
    def image_ref(self) -> str:
        return f"{self.config.registry.host}/{self.app}:{self.tag}"

    def run(self) -> BuildResult:
        detection = detect(self.source_dir)
        kind = detection.kind
        self.say(f"-----> detected a {kind} app: {detection.reason}")
        process_types = read_procfile(self.source_dir)
        for name, command in process_types.items():
            self.say(f"       Procfile: {name}: {command}")
        src_digest = source_digest(self.source_dir)
        plan, base = self.plan(kind, process_types)
        reuse_key = hash_parts(
            ENGINE_VERSION,
            self.app,
            src_digest,
            base.image.digest,
            json.dumps(self.config.build_args, sort_keys=True),
        )
        with registry_push_lock(self.config.lock_dir):  # no garbage collection meanwhile
            reused = _reuse(self.client, self.app, reuse_key, self.tag, self.say)
        if reused is not None:
            digest, size = reused
            self.say(f"-----> tagged {self.image_ref} ({digest})")
            steps = [StepRecord("reuse identical image", "", 0.0, True)]
            return BuildResult(self.image_ref, digest, size, str(kind), process_types, steps,
                               reused=True)  # fmt: skip
        layers, records = self.run_steps(plan, base)
        self.check_cancelled("push")
        plan.settings.labels.update(
            {
                f"{LABEL_PREFIX}app": self.app,
                f"{LABEL_PREFIX}build-id": self.build_id,
                f"{LABEL_PREFIX}source-digest": src_digest,
                f"{LABEL_PREFIX}kind": str(kind),
                f"{LABEL_PREFIX}procfile": json.dumps(process_types, sort_keys=True),
                f"{LABEL_PREFIX}build-key": reuse_key,
            }
        )
        # Blobs pushed before their manifest are unreferenced until it is:
        # a garbage collection in between would delete them.
        with registry_push_lock(self.config.lock_dir):
            digest, size, seconds = self.push(plan, base, layers, reuse_key)
            records.append(StepRecord("push", "", seconds, False))
            self.prune()
        return BuildResult(self.image_ref, digest, size, str(kind), process_types, records)

    def plan(self, kind: AppKind, process_types: dict[str, str]) -> tuple[BuildPlan, _Base]:
        bases: list[_Base] = []

        def load_base(ref: str) -> BaseImage:
            bases.append(_pull_base(self.store, ref, self.say))
            return bases[-1].settings

        config = self.config
        if kind == AppKind.DOCKERFILE:
            plan = parse_dockerfile(
                read_dockerfile(self.source_dir),
                source_dir=self.source_dir,
                stack_ref=config.stack_ref,
                registry_host=config.registry.host,
                load_base=load_base,
                build_args=config.build_args,
                base_allowed=lambda ref: base_allowed(ref, tenant=self.tenant, config=config),
            )
            plan.process_types = dict(process_types)
            plan.settings.env.setdefault("PORT", DEFAULT_PORT)
            return plan, bases[-1]
        base_settings = load_base(config.stack_ref)
        inp = BuildpackInput(
            source_dir=self.source_dir,
            base=base_settings,
            base_digest=bases[-1].image.digest,
            config=config,
            process_types=process_types,
            scratch_dir=self.work / "scratch",
        )
        return BUILDPACKS[kind](inp), bases[-1]

    def run_steps(
        self, plan: BuildPlan, base: _Base
    ) -> tuple[list[publish.Layer], list[StepRecord]]:
        """Each step makes one layer on top of the ones before it."""
        say = self.say
        cache = LayerCache(self.config.cache_dir)
        layers = _base_layers(self.client, base)
        lowers = list(self.store.lower_dirs(base.image))
        host_view: set[Path] = set()  # RUN layers: owned by the range's ids (steps.py)
        records: list[StepRecord] = []
        has_run = any(isinstance(s, RunStep) for s in plan.steps)
        secrets = write_secrets(self.secrets, self.work / "private" / "secrets") if has_run else []
        env = StepEnv(
            runc=Runc(self.config.runc_root, binary=self.config.runc_binary),
            # Only a build with a command to run needs the bridge set up.
            network=_network(self.config) if has_run else None,
            limits=self.config.limits,
            cgroup_parent=self.config.cgroup_parent,
            extra_env=trust_env(self.config.trust),
            extra_mounts=(*trust_mounts(self.config.trust), *secrets) if has_run else (),
            cancel=self.cancel,
            id_range=self.tenant.id_range,
        )
        if env.network is not None or any(isinstance(s, RunStep) for s in plan.steps):
            # As the agent does: a tenant's step never runs on a runc that
            # lets a container start in the host's filesystem (CVE-2024-21626).
            # The verdict is cached per runc binary, next to the image store.
            check_runtime_safe(env.runc, self.config.images_dir.parent)
        for index, step in enumerate(plan.steps):
            self.check_cancelled(step.name)
            t0 = time.monotonic()
            step_dir = self.work / f"step-{index}"
            try:
                if isinstance(step, CopyStep):
                    say(f"-----> {step.name}")
                    tree, layer = _copy_layer(step, lowers, step_dir, env.id_range)
                    cached = False
                else:
                    tree, layer, cached = _run_or_reuse(
                        step, layers, lowers, host_view, step_dir, env, cache, say
                    )
                    host_view.add(tree)
            except HostError as exc:
                # runc, mount or netns trouble: still name the step it broke.
                raise BuildFailed(exc.message, step=step.name) from exc
            lowers.insert(0, tree)
            layers.append(layer)
            duration = time.monotonic() - t0
            command = step.command if isinstance(step, RunStep) else ""
            records.append(StepRecord(say.redact(step.name), say.redact(command), duration, cached))
            say(f"       {step.name}: {duration:.2f} s{' (cached)' if cached else ''}")
        return layers, records

    def push(
        self, plan: BuildPlan, base: _Base, layers: list[publish.Layer], reuse_key: str
    ) -> tuple[str, int, float]:
        """Blobs first, then the manifest under its tags: a failed push
        leaves no tag on a half-pushed image."""
        t0 = time.monotonic()
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        config_doc = publish.image_config(
            plan.settings, layers, created=created,
            base_history=base.image.config.get("history", []),
        )  # fmt: skip
        self.say(f"-----> pushing {self.image_ref}")
        tags = [f"{REUSE_TAG_PREFIX}{reuse_key[:64]}", self.tag]
        digest, size = publish.push_image(
            self.client, self.app, layers, config_doc, tags, self.say, point="build.push"
        )
        self.say(f"-----> pushed {self.image_ref} ({digest}, {size} bytes)")
        return digest, size, time.monotonic() - t0

    def prune(self) -> None:
        try:
            deleted = publish.prune_versions(
                self.client, self.app, self.config.keep_images, self.config.protected_digests()
            )
            for old in deleted:
                self.say(f"       deleted old image {old}")
            if deleted:
                mark_gc_needed(self.config.lock_dir)
        except HostError as exc:
            # The image is built and tagged: a registry that refuses deletes
            # must not turn a good build into a failed one.
            self.say(f"       could not delete old images: {exc.message}")


def _masked_values(config: BuildConfig, secrets: Mapping[str, str] | Sequence[str]) -> list[str]:
    """Every value no log line may show: the build's secrets, the registry
    password, and passwords in index and proxy URLs."""
    values = list(secrets.values()) if isinstance(secrets, Mapping) else list(secrets)
    if config.registry.password:
        values.append(config.registry.password)
    trust = config.trust
    for url in (config.pip_index_url, config.npm_registry_url, trust.http_proxy,
                trust.https_proxy):  # fmt: skip
        values += url_secrets(url)
    return values


def _store_kwargs(config: BuildConfig) -> dict[str, Any]:
    reg = config.registry

    def credentials(host: str) -> tuple[str, str] | None:
        if host == reg.host and reg.username and reg.password:
            return reg.username, reg.password
        return None

    def clients(host: str) -> RegistryClient | None:
        # In token mode the builder mints its own tokens for the platform's
        # registry, for pulls of a base image as for pushes; the realm the
        # registry names only refuses (paas/builds/registry_realm.py).
        return reg.client() if host == reg.host and reg.token_source else None

    return {
        "credentials": credentials,
        "clients": clients,
        "ca_file": reg.ca_file,
        "http_registries": frozenset({reg.host}) if reg.scheme == "http" else frozenset(),
    }


def _pull_base(store: ImageStore, ref: str, say: RedactingLog) -> _Base:
    say(f"-----> base image {ref}")
    try:
        image = store.pull(ref)
    except ImageNotFound as exc:
        raise BuildFailed(f"base image {ref} was not found in the registry", step="FROM") from exc
    cfg = image.config.get("config") or {}
    env = dict(item.split("=", 1) for item in cfg.get("Env") or [] if "=" in item)
    settings = BaseImage(
        ref=ref,
        env=env,
        cmd=cfg.get("Cmd"),
        entrypoint=cfg.get("Entrypoint"),
        workdir=cfg.get("WorkingDir") or "",
        user=cfg.get("User") or None,
        exposed_ports=sorted(cfg.get("ExposedPorts") or {}),
        labels={
            k: v for k, v in (cfg.get("Labels") or {}).items() if not k.startswith(LABEL_PREFIX)
        },
    )
    return _Base(image=image, settings=settings, repo=ImageRef.parse(ref).repository)


def _reuse(
    client: RegistryClient, repo: str, key: str, tag: str, say: RedactingLog
) -> tuple[str, int] | None:
    """An identical earlier build (same source, base and engine): tag its
    image again instead of making a new one, so the digest is the same."""
    try:
        data, digest, media_type = client.get_manifest(repo, f"{REUSE_TAG_PREFIX}{key[:64]}")
    except ImageNotFound:
        return None
    say(f"-----> same source and base as an earlier build: reusing its image {digest}")
    client.push_manifest(repo, data, tag, media_type or OCI_MANIFEST)
    doc = json.loads(data)
    size = int(doc["config"]["size"]) + sum(int(layer["size"]) for layer in doc["layers"])
    return digest, size


def _copy_layer(
    step: CopyStep, lowers: list[Path], step_dir: Path, id_range: IdRange
) -> tuple[Path, publish.Layer]:
    tree = step_dir / "tree"
    tree.mkdir(parents=True)
    materialize_copy(step, tree, lowers)
    # A COPY tree is in the container's view (mounted idmapped below later
    # steps); a parent directory's owner copied from a RUN layer below is
    # in the range's view: shift it back (ids.py).
    with safepath.opened_dir(tree) as tree_fd:
        ids.shift_tree(tree_fd, id_range, into_range=False)
    info = pack_layer(tree, step_dir / "layer.tar.gz", from_overlay_upper=False)
    return tree, publish.Layer(info, step_dir / "layer.tar.gz", created_by=step.name)


def _run_or_reuse(
    step: RunStep,
    layers: list[publish.Layer],
    lowers: list[Path],
    host_view: set[Path],
    step_dir: Path,
    env: StepEnv,
    cache: LayerCache,
    say: RedactingLog,
) -> tuple[Path, publish.Layer, bool]:
    key = step.cache_key
    if key is None and step.chain_cache:
        key = hash_parts(
            "run", *[layer.info.diff_id for layer in layers],
            json.dumps([step.argv, step.env, step.workdir, step.user], sort_keys=True),
        )  # fmt: skip
    if key:
        # A cached tree is owned by the range's host ids (steps.py): it is
        # only good for a build in the same range.
        key = hash_parts("userns", str(env.id_range.host_id), key)
    hit = cache.get(key) if key else None
    if hit is not None:
        what = f"{step.installer} not run" if step.installer else "not run again"
        say(f"-----> {step.name}: unchanged, using the cached layer ({what})")
        return hit.tree, publish.Layer(hit.info, hit.blob, created_by=step.name), True
    say(f"-----> {step.name}")
    say(f"       $ {step.command}")
    cid = f"build-{uuid.uuid4().hex[:12]}"
    upper = run_step(
        step, cid=cid, lowers=lowers, step_dir=step_dir, env=env, say=say.step, host_view=host_view
    )
    info = pack_layer(
        upper, step_dir / "layer.tar.gz", from_overlay_upper=True, id_range=env.id_range
    )
    if key:
        hit = cache.put(key, upper, step_dir / "layer.tar.gz", info, step.name)
        return hit.tree, publish.Layer(hit.info, hit.blob, created_by=step.name), False
    return upper, publish.Layer(info, step_dir / "layer.tar.gz", created_by=step.name), False


def _base_layers(client: RegistryClient, base: _Base) -> list[publish.Layer]:
    """The base's layers as the registry describes them (size and media
    type come from its manifest; they are mounted, never re-uploaded)."""
    data, _digest, _media = client.get_manifest(base.repo, base.image.digest)
    descriptors = json.loads(data)["layers"]
    diff_ids = base.image.config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(descriptors):
        raise BuildFailed(
            f"base image {base.settings.ref}: config and manifest disagree on its layers",
            step="FROM",
        )
    return [
        publish.Layer(
            info=LayerInfo(digest=d["digest"], diff_id=diff_id, size=int(d["size"])),
            path=None,
            source_repo=base.repo,
            media_type=d.get("mediaType", publish.OCI_LAYER_GZIP),
        )
        for d, diff_id in zip(descriptors, diff_ids, strict=True)
    ]


def _network(config: BuildConfig) -> HostNetwork | None:
    if config.network is None:
        return None
    net = HostNetwork(
        config.network.state_dir, config.network.bridge, config.network.subnet,
        config.network.nft_table, policy=PolicySettings(allowed=config.network.allowed),
    )  # fmt: skip
    net.setup()
    return net
