"""Hostile builds: a tenant shapes the trees the build worker (root) walks
after a step, and tries to make it write, delete or link on the host.

Each test is one attack, run as a real build (real runc, real registry):
a canary directory stands for the host, reachable through the links the
tenant plants (by absolute path and by relative climbs that only escape
once the tree sits in the worker's build directory). Each asserts that the
canary is unchanged to the byte (content, modes, owners, link counts,
mtimes) and that nothing appeared next to the build directory. Where the
attack needs a step to succeed, the test checks that it did, so that the
attack really ran.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest

from paas.builds.engine.build import BuildResult, build_image
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.tenant import ANONYMOUS, Tenant
from runtime_agent.images.layers import LayerInfo
from tests.support.images import image_config, push_image

# A relative link that climbs further up than any build directory is deep
# ends at the host's "/" wherever the tree sits (the kernel stops there),
# then comes down to the canary: no test depends on the worker's layout.
CLIMB = 40


def climb(path: Path) -> str:
    return "../" * CLIMB + str(path).lstrip("/")


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                body = Path(path).read_bytes()
            else:
                body = None
            key = os.path.relpath(path, root)
            out[key] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, body)
    return out


class Host:
    """The canary: what a link to "the host" reaches, with entries named
    like the places a build touches (mount points, kept paths)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.dir = tmp_path / "host"
        for sub in ("sub", "hosts", "resolv.conf", "pip", "npm", ".venv", "node_modules"):
            (self.dir / sub).mkdir(parents=True)
        (self.dir / "secret").write_text("host secret\n")
        (self.dir / "sub" / "f").write_text("host file\n")
        (self.dir / "pip" / "wheel").write_text("host cache\n")
        (self.dir / "npm" / "entry").write_text("host cache\n")
        (self.dir / "node_modules" / "m").write_text("host module\n")
        self.before = snapshot(self.dir)
        self.names = set(os.listdir(tmp_path))

    def assert_untouched(self) -> None:
        assert snapshot(self.dir) == self.before
        appeared = set(os.listdir(self.tmp_path)) - self.names - {"work", "runc", "src"}
        assert appeared == set()
        work = self.tmp_path / "work"
        assert not work.exists() or os.listdir(work) == []  # the build dir is gone


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def build(
    config, source: Path, app: str | None = None, lines=None, tenant: Tenant = ANONYMOUS
) -> BuildResult:
    return build_image(
        source_dir=source, app=app or f"hostile-{uuid.uuid4().hex[:6]}", build_id="b1",
        version=1, config=config, log=(lines if lines is not None else []).append,
        tenant=tenant,
    )  # fmt: skip


def dockerfile_source(tmp_path: Path, text: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "Dockerfile").write_text(textwrap.dedent(text))
    return src


def image_files(config, result: BuildResult, tmp_path: Path) -> set[str]:
    """Every path in the built image's own layers (not the stack's), read
    from the layer tars in the registry."""
    repo = result.image_ref.split("/", 1)[1].rsplit(":", 1)[0]
    names: set[str] = set()
    with config.registry.client() as client:
        manifest = json.loads(client.get_manifest(repo, result.digest)[0])
        for layer in manifest["layers"][1:]:  # the stack is the first
            blob = tmp_path / "blob.tar.gz"
            client.fetch_blob(repo, layer["digest"], blob)
            with tarfile.open(blob) as tar:
                names.update(m.name for m in tar.getmembers())
            blob.unlink()
    return names


# --- COPY with several sources: a link an earlier source left ----------------


@pytest.mark.root
@pytest.mark.parametrize("target", ["absolute", "relative"])
@pytest.mark.parametrize("kind", ["file", "directory"])
def test_copy_never_writes_through_a_link_an_earlier_source_left(
    engine_config, tmp_path, host, target, kind
):
    src = tmp_path / "src"
    # Source 1 holds the link. Its relative target stays inside the source
    # (as deep as it climbs, so the upload intake accepts it) but leaves the
    # layer once copied to /D.
    deep = "/".join(f"x{i}" for i in range(CLIMB))
    first = src / deep
    first.mkdir(parents=True)
    name = "secret" if kind == "file" else "sub"
    link = str(host.dir / name) if target == "absolute" else climb(host.dir / name)
    (first / name).symlink_to(link)
    # Source 2 writes to the same name.
    second = src / "second"
    second.mkdir()
    if kind == "file":
        (second / "secret").write_text("tenant wrote this\n")
    else:
        (second / "sub").mkdir()
        (second / "sub" / "planted").write_text("tenant wrote this\n")
    dockerfile_source(tmp_path, f"FROM stack\nCOPY {deep} second /D/\n")
    build(engine_config, src)
    host.assert_untouched()


@pytest.mark.root
def test_a_buildpack_source_with_links_to_the_host_copies_them_as_links(
    engine_config, tmp_path, host
):
    """The static and Python buildpacks copy the source to /app in one COPY:
    links in it (here to the host, by absolute and relative names) land in
    the layer as links, and nothing is read or written through them."""
    src = tmp_path / "src"
    (src / "public").mkdir(parents=True)
    (src / "index.html").write_text("hello\n")
    (src / "public" / "abs").symlink_to(host.dir)
    (src / "public" / "rel").symlink_to(climb(host.dir))
    (src / "public" / "file").symlink_to(host.dir / "secret")
    result = build(engine_config, src)
    host.assert_untouched()
    links = image_links(engine_config, result, tmp_path / "work")
    assert links == {
        "app/public/abs": str(host.dir),
        "app/public/rel": climb(host.dir),
        "app/public/file": str(host.dir / "secret"),
    }


def image_links(config, result: BuildResult, tmp_path: Path) -> dict[str, str]:
    repo = result.image_ref.split("/", 1)[1].rsplit(":", 1)[0]
    links: dict[str, str] = {}
    with config.registry.client() as client:
        manifest = json.loads(client.get_manifest(repo, result.digest)[0])
        for layer in manifest["layers"][1:]:
            blob = tmp_path / "blob.tar.gz"
            client.fetch_blob(repo, layer["digest"], blob)
            with tarfile.open(blob) as tar:
                links.update({m.name: m.linkname for m in tar.getmembers() if m.issym()})
            blob.unlink()
    return links


# --- RUN steps that swap paths the worker cleans up for links -----------------


@pytest.mark.root
@pytest.mark.parametrize("target", ["absolute", "relative"])
@pytest.mark.parametrize("where", ["etc", "etc/hosts"])
def test_links_named_like_bind_mount_points_leave_the_host_alone(
    engine_config, tmp_path, host, target, where
):
    """/etc/hosts and /etc/resolv.conf are bind mounts in every RUN step;
    after it the worker drops their mount points from the layer. A RUN step
    cannot replace them (they are mounted), so a COPY plants the links in
    the layer below: the mount point, or its parent, a link to the host."""
    name = where.rsplit("/", 1)[-1]
    host_name = "" if where == "etc" else "/hosts"
    link = str(host.dir) + host_name
    if target == "relative":
        link = climb(host.dir) + host_name
    src = dockerfile_source(tmp_path, "FROM stack\nCOPY root/ /\nRUN echo ran\n")
    planted = src / "root" / where
    planted.parent.mkdir(parents=True)
    planted.symlink_to(link)
    assert planted.name == name
    lines: list[str] = []
    build(engine_config, src, lines=lines)
    assert "ran" in [line.strip() for line in lines]
    host.assert_untouched()


@pytest.mark.root
@pytest.mark.parametrize(
    "swap",
    ["app-to-host-dir", "app-to-host-dir-relative", "kept-path-to-host-dir"],
)
def test_a_python_build_backend_swapping_app_for_a_link_leaves_the_host_alone(
    engine_config, tmp_path, host, swap
):
    """A local-path requirement's build backend (run by pip in the install
    step, like a setup.py) moves /app away and leaves a link behind. The
    worker keeps only /app/.venv of that step: walking through the link it
    would empty the host directory."""
    c = str(host.dir)
    attack = {
        # /app moves to the host's path inside the container, so pip goes
        # on installing through the link and the step succeeds.
        "app-to-host-dir": f"os.makedirs({c!r}.rsplit('/', 1)[0], exist_ok=True)\n"
        f"os.rename('/app', {c!r}); os.symlink({c!r}, '/app')",
        "app-to-host-dir-relative": f"os.makedirs({c!r}.rsplit('/', 1)[0], exist_ok=True)\n"
        f"os.rename('/app', {c!r}); os.symlink({climb(host.dir)!r}, '/app')",
        "kept-path-to-host-dir": f"os.makedirs({c!r}.rsplit('/', 1)[0], exist_ok=True)\n"
        f"os.rename('/app/.venv', {c!r}); os.symlink({c!r}, '/app/.venv')",
    }[swap]
    src = evil_python_source(tmp_path, attack)
    lines: list[str] = []
    build(engine_config, src, lines=lines)
    assert "evil: swapped" in "\n".join(lines)
    host.assert_untouched()


@pytest.mark.root
def test_a_python_build_backend_swapping_a_mount_point_parent_leaves_the_host_alone(
    engine_config, tmp_path, host
):
    """/var/cache/paas/pip is a bind mount (the download cache): after the
    step the worker drops its mount point. With /var/cache/paas a link to
    the host, a path walk would remove the host's "pip" directory."""
    c = str(host.dir)
    attack = (
        f"os.makedirs({c!r}.rsplit('/', 1)[0], exist_ok=True)\n"
        f"os.rename('/var/cache/paas', '/var/cache/paas.moved')\n"
        f"os.symlink({c!r}, '/var/cache/paas')"
    )
    src = evil_python_source(tmp_path, attack)
    lines: list[str] = []
    build(engine_config, src, lines=lines)
    assert "evil: swapped" in "\n".join(lines)
    host.assert_untouched()


def evil_python_source(tmp_path: Path, attack: str) -> Path:
    """A Python app requiring ``./evil``, whose in-tree PEP 517 backend runs
    ``attack`` while pip builds it, then returns a valid wheel."""
    src = tmp_path / "src"
    evil = src / "evil"
    evil.mkdir(parents=True)
    (src / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\n./evil\n")
    (src / "app.py").write_text("print('app')\n")
    (evil / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "evil"\nversion = "1.0"\n'
    )
    (evil / "backend.py").write_text(
        textwrap.dedent(
            """\
            import base64, hashlib, os, sys, zipfile

            METADATA = b"Metadata-Version: 2.1\\nName: evil\\nVersion: 1.0\\n"
            WHEEL = (
                b"Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\n"
                b"Tag: py3-none-any\\n"
            )

            def _attack():
            {attack}
                # pip hides a backend's output: tell the build log directly.
                with open("/proc/1/fd/1", "w") as log:
                    log.write("evil: swapped\\n")

            def get_requires_for_build_wheel(config_settings=None):
                return []

            def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
                _attack()
                name = "evil-1.0-py3-none-any.whl"
                files = {{
                    "evil.py": b"",
                    "evil-1.0.dist-info/METADATA": METADATA,
                    "evil-1.0.dist-info/WHEEL": WHEEL,
                }}
                record = []
                for rel, data in files.items():
                    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                    record.append(f"{{rel}},sha256={{digest.decode()}},{{len(data)}}")
                record.append("evil-1.0.dist-info/RECORD,,")
                files["evil-1.0.dist-info/RECORD"] = "\\n".join(record).encode() + b"\\n"
                with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
                    for rel, data in files.items():
                        zf.writestr(rel, data)
                return name
            """
        ).format(attack=textwrap.indent(attack, "    "))
    )
    return src


@pytest.mark.root
@pytest.mark.parametrize(
    "swap",
    [
        "app-to-host-dir",
        "npm-cache-parent-to-host-dir",
        "kept-path-to-host-file",
        "kept-path-to-host-file-relative",
    ],
)
def test_an_npm_postinstall_swapping_paths_for_links_leaves_the_host_alone(
    engine_config, tmp_path, host, swap
):
    c = str(host.dir)
    parent = c.rsplit("/", 1)[0]
    # The kept path itself a link to a host file: keeping it must not open,
    # truncate or copy that file (postinstall is npm's last act, so the
    # step still succeeds).
    to_file = "mkdir -p /app/node_modules && mv /app/node_modules /app/nm.moved && ln -s {} "
    script = {
        # npm's cwd moves with /app; /app's kept node_modules resolve through the link.
        "app-to-host-dir": f"mkdir -p {parent} && mv /app {c} && ln -s {c} /app",
        "npm-cache-parent-to-host-dir": f"mkdir -p {parent} && "
        f"mv /var/cache/paas /var/cache/paas.moved && ln -s {c} /var/cache/paas",
        "kept-path-to-host-file": to_file.format(host.dir / "secret") + "/app/node_modules",
        "kept-path-to-host-file-relative": to_file.format(climb(host.dir / "secret"))
        + "/app/node_modules",
    }[swap]
    src = tmp_path / "src"
    src.mkdir()
    package = {
        "name": "evil", "version": "1.0.0", "private": True,
        "scripts": {"start": "node server.js", "postinstall": f"{script} && echo evil: swapped"},
    }  # fmt: skip
    lock = {
        "name": "evil", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
        "packages": {"": {"name": "evil", "version": "1.0.0"}}, "x-run": uuid.uuid4().hex,
    }  # fmt: skip
    (src / "package.json").write_text(json.dumps(package))
    (src / "package-lock.json").write_text(json.dumps(lock))
    (src / "server.js").write_text("console.log('app')\n")
    lines: list[str] = []
    build(engine_config, src, lines=lines)
    assert "evil: swapped" in "\n".join(lines)
    host.assert_untouched()


# --- WORKDIR and COPY destinations through links ------------------------------


@pytest.mark.root
def test_workdir_and_copy_destinations_through_links_stay_in_the_image(
    engine_config, tmp_path, host
):
    c = str(host.dir)
    src = dockerfile_source(
        tmp_path,
        f"""\
        FROM stack
        RUN ln -s {c} /abs && ln -s {climb(host.dir)} /rel && ln -s {c}/secret /file
        WORKDIR /abs/made-by-workdir
        COPY f /abs/
        COPY g /rel/
        COPY d/ /abs/sub/
        COPY f /file
        """,
    )
    (src / "f").write_text("tenant file\n")
    (src / "g").write_text("tenant file\n")
    (src / "d").mkdir()
    (src / "d" / "planted").write_text("tenant file\n")
    result = build(engine_config, src)
    host.assert_untouched()
    # The links were resolved inside the image: that is where the files went.
    files = image_files(engine_config, result, tmp_path / "work")
    inside = c.lstrip("/")
    assert f"{inside}/made-by-workdir" in files
    assert f"{inside}/f" in files
    assert f"{inside}/sub/planted" in files
    assert f"{inside}/g" in files  # /rel climbs to the image's / and down
    assert f"{inside}/secret" in files


# --- a base layer with a hard link to a path outside it ------------------------


def tar_layer(path: Path, entries: list[tarfile.TarInfo]) -> LayerInfo:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isreg() else None)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    blob = gzip.compress(raw.getvalue(), mtime=0)
    path.write_bytes(blob)
    return LayerInfo("sha256:" + hashlib.sha256(blob).hexdigest(), diff_id, len(blob))


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.root
@pytest.mark.parametrize("how", ["absolute", "climbing", "through-a-symlink"])
def test_a_base_layer_hard_linking_outside_itself_fails_the_build(
    engine_config, registry, tmp_path, host, how
):
    secret = str(host.dir / "secret")
    entries = {
        "absolute": [entry("stolen", tarfile.LNKTYPE, secret)],
        "climbing": [entry("stolen", tarfile.LNKTYPE, "../" * 12 + secret.lstrip("/"))],
        "through-a-symlink": [
            entry("hostdir", tarfile.SYMTYPE, str(host.dir)),
            entry("stolen", tarfile.LNKTYPE, "hostdir/secret"),
        ],
    }[how]
    repo = f"hardlink-{uuid.uuid4().hex[:6]}"
    blob = tmp_path / "layer.tar.gz"
    info = tar_layer(blob, [entry("etc", tarfile.DIRTYPE), *entries])
    with registry.client() as client:
        push_image(client, repo, "v1", [(blob, info)], image_config([info.diff_id]))
    blob.unlink()
    src = dockerfile_source(tmp_path, f"FROM {repo}:v1\nRUN true\n")
    team = Tenant(team="hostile", apps=frozenset({repo}))  # the team's own app image
    with pytest.raises(BuildFailed, match="absolute path|points outside|through a link"):
        build(engine_config, src, tenant=team)
    host.assert_untouched()
