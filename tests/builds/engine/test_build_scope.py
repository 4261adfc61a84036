"""What a build may read is its team's: FROM names the stack, the team's own
apps or an image the platform allows; caches are per team."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.buildpacks import python
from paas.builds.engine.buildpacks.common import BuildpackInput
from paas.builds.engine.config import RegistrySettings
from paas.builds.engine.dockerfile import BaseImage
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import RunStep
from paas.builds.engine.stack import StackSpec, publish_stack
from paas.builds.engine.tenant import Tenant, base_allowed, team_cache_dir
from paas.builds.registry_tokens import parse_scopes
from tests.builds.engine.conftest import STACK_CACHE
from tests.support.registry import run_registry


def build(config, source, app, tenant, lines=None):
    return build_image(
        source_dir=source, app=app, build_id="b1", version=1, config=config,
        log=(lines if lines is not None else []).append, tenant=tenant,
    )  # fmt: skip


def teams() -> tuple[Tenant, Tenant, str, str]:
    """alice's team with app "a-...", bob's team with app "b-..."."""
    a_app, b_app = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    alice = Tenant(team=f"alice-{uuid.uuid4().hex[:6]}", apps=frozenset({a_app}))
    bob = Tenant(team=f"bob-{uuid.uuid4().hex[:6]}", apps=frozenset({b_app}))
    return alice, bob, a_app, b_app


def from_source(tmp_path: Path, name: str, line: str) -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "Dockerfile").write_text(f"# a base\n{line}\nRUN true\n")
    return src


@pytest.mark.root
def test_from_another_teams_image_is_refused_before_any_pull(
    engine_config, sample, tmp_path, image_store
):
    alice, bob, a_app, b_app = teams()
    alices = build(engine_config, sample("python-nodeps"), a_app, alice)
    lines: list[str] = []
    with pytest.raises(BuildFailed, match=f"Dockerfile line 2: FROM {a_app}:v1: a build may"):
        build(engine_config, from_source(tmp_path, "bob", f"FROM {a_app}:v1"), b_app, bob, lines)
    assert not any("base image" in line and a_app in line for line in lines)
    assert image_store.get(alices.digest) is None  # nothing of alice's was pulled
    # By digest, or naming the registry, is the same image: refused too.
    for ref in (f"{a_app}@{alices.digest}", alices.digest_ref):
        with pytest.raises(BuildFailed, match="a build may start from the stack"):
            build(engine_config, from_source(tmp_path, f"bob-{len(ref)}", f"FROM {ref}"),
                  b_app, bob)  # fmt: skip
    assert image_store.get(alices.digest) is None


@pytest.mark.root
def test_from_an_image_of_the_own_team_works(engine_config, sample, tmp_path):
    alice, _bob, a_app, _ = teams()
    second = f"a2-{uuid.uuid4().hex[:6]}"
    alice = replace(alice, apps=alice.apps | {second})
    build(engine_config, sample("python-nodeps"), a_app, alice)
    result = build(engine_config, from_source(tmp_path, "alice", f"FROM {a_app}:v1"), second,
                   alice)  # fmt: skip
    assert result.digest


@pytest.mark.root
def test_in_token_mode_the_builder_pulls_its_bases_with_tokens_it_mints(
    engine_config, sample, tmp_path
):
    """The platform's registry as manage.py setup_registry makes it: token
    mode, and a realm that refuses everyone (paas/builds/registry_realm.py).
    So the builder answers each challenge itself with a token it mints, for
    the base images it pulls (the stack, then the team's own app) as for its
    pushes; it never goes to the realm."""
    alice, _bob, a_app, _ = teams()
    second = f"a2-{uuid.uuid4().hex[:6]}"
    alice = replace(alice, apps=alice.apps | {second})
    with run_registry(tmp_path / "registry", token=True) as registry:
        signer = registry.signer()
        minted: list[str] = []

        def mint(scope: str) -> str:
            minted.append(scope)
            return signer.mint(parse_scopes(scope), subject="paas-worker", ttl_s=300)

        settings = RegistrySettings(
            host=registry.host, scheme=registry.scheme, ca_file=str(registry.ca_file),
            token_source=mint,
        )  # fmt: skip
        with settings.client() as client:
            stack = publish_stack(StackSpec(), STACK_CACHE, client, print)
        config = replace(engine_config, registry=settings, stack_ref=stack,
                         image_store_dir=tmp_path / "images")  # fmt: skip
        build(config, sample("python-nodeps"), a_app, alice)
        result = build(config, from_source(tmp_path, "alice", f"FROM {a_app}:v1"), second, alice)
    assert result.digest
    assert f"repository:{a_app}:pull" in minted
    assert registry.tokens_issued == []  # the realm was never asked


@pytest.mark.root
def test_from_an_image_the_admin_allowed_works_for_every_team(engine_config, sample, tmp_path):
    alice, bob, a_app, b_app = teams()
    build(engine_config, sample("python-nodeps"), a_app, alice)
    allowed = replace(engine_config, allowed_images=(f"{a_app}:v1",))
    assert build(allowed, from_source(tmp_path, "bob", f"FROM {a_app}:v1"), b_app, bob).digest
    # Only the tag listed.
    with pytest.raises(BuildFailed, match="Dockerfile line 2"):
        build(allowed, from_source(tmp_path, "bob2", f"FROM {a_app}:v2"), b_app, bob)


@pytest.mark.root
def test_two_teams_building_the_same_requirements_share_no_cache(
    engine_config, sample, package_index, session_cache
):
    alice, bob, a_app, b_app = teams()
    requirements = f"# {uuid.uuid4().hex}\ntinydep==1.0\n"
    results = {}
    src = sample("python-deps")
    (src / "requirements.txt").write_text(requirements)
    for tenant, app in ((alice, a_app), (bob, b_app)):
        asked = len(package_index.requests)
        results[tenant.team] = build(engine_config, src, app, tenant)
        # Each team's first build really installs: nothing of the other's is read.
        assert results[tenant.team].steps[0].cached is False
        assert len(package_index.requests) > asked
    (src / "main.py").write_text((src / "main.py").read_text() + "\n# changed\n")
    assert build(engine_config, src, a_app, alice).steps[0].cached is True  # its own cache
    # On disk: each team's layers and downloads under its own directory only.
    layers = {}
    for tenant in (alice, bob):
        root = team_cache_dir(session_cache, tenant)
        layers[tenant.team] = {p.name for p in (root / "layers").iterdir()}
        assert (root / "downloads" / "pip").is_dir()  # the step's pip cache mount
    assert layers[alice.team] and layers[bob.team]
    assert not (session_cache / "layers").exists()
    assert not (session_cache / "downloads").exists()


def test_local_path_requirements_are_part_of_the_dependency_key(tmp_path, engine_config_unit):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "setup.py").write_text("v1")
    (src / "requirements.txt").write_text("./pkg\n-e /workspace/pkg\nflask\n")

    def key() -> str:
        inp = BuildpackInput(
            source_dir=src, base=BaseImage(ref="stack", env={}), base_digest="sha256:x",
            config=engine_config_unit, process_types={"web": "x"},
            scratch_dir=tmp_path / "scratch",
        )  # fmt: skip
        step = python.plan(inp).steps[0]
        assert isinstance(step, RunStep) and step.cache_key is not None
        return step.cache_key

    first = key()
    assert key() == first
    (src / "pkg" / "setup.py").write_text("v2")
    assert key() != first
    (src / "pkg" / "setup.py").unlink()
    (src / "pkg" / "setup.py").symlink_to("/etc/passwd")  # hashed as a link, never read
    assert key() != first


@pytest.fixture
def engine_config_unit(tmp_path):
    from paas.builds.engine.config import BuildConfig, RegistrySettings

    return BuildConfig(
        registry=RegistrySettings(host="127.0.0.1:5999"),
        stack_ref="127.0.0.1:5999/stacks/x:1",
        cache_dir=tmp_path / "cache",
        work_dir=tmp_path / "work",
        runc_root=tmp_path / "runc",
    )


def test_the_base_policy_names_what_each_team_may_start_from(engine_config_unit):
    config = replace(
        engine_config_unit,
        stack_ref="127.0.0.1:5999/stacks/bookworm:20260101",
        allowed_images=("shared/python", "shared/node:20"),
    )
    alice = Tenant(team="alice", apps=frozenset({"alice-web"}))

    def allowed(ref: str) -> bool:
        return base_allowed(ref, tenant=alice, config=config)

    assert allowed(config.stack_ref)
    assert allowed("127.0.0.1:5999/stacks/bookworm:20251201")  # the stack, another date
    assert allowed("127.0.0.1:5999/alice-web:v3")
    assert allowed("127.0.0.1:5999/alice-web@sha256:" + "a" * 64)
    assert allowed("127.0.0.1:5999/shared/python:3.11")
    assert allowed("127.0.0.1:5999/shared/node:20")
    assert not allowed("127.0.0.1:5999/shared/node:21")
    assert not allowed("127.0.0.1:5999/shared/node@sha256:" + "a" * 64)
    assert not allowed("127.0.0.1:5999/bob-web:v1")
    assert not allowed("127.0.0.1:6000/alice-web:v1")  # another registry
    assert not allowed("127.0.0.1:5999/alice-web:v1\n")
