"""Pieces of the engine that need neither root nor a registry."""

import json
import os

from paas.builds.engine import publish
from paas.builds.engine.files import materialize_copy, resolve
from paas.builds.engine.plan import CopyItem, CopyStep, ImageSettings
from paas.builds.engine.redact import RedactingLog
from paas.builds.engine.source import source_digest
from paas.builds.engine.steps import _keep_only
from runtime_agent.images.layers import LayerInfo


def test_every_secret_is_masked_in_every_line():
    lines: list[str] = []
    log = RedactingLog(lines.append, ["hunter22", "tok-abc"])
    log("password=hunter22\nheader: Bearer tok-abc and hunter22")
    assert lines == ["password=***", "header: Bearer *** and ***"]


def test_a_longer_secret_containing_a_shorter_one_is_masked_whole():
    lines: list[str] = []
    RedactingLog(lines.append, ["abc", "abcdef"])("x abcdef y")
    assert lines == ["x *** y"]


def test_source_digest_ignores_timestamps_but_not_content(tmp_path):
    (tmp_path / "a.py").write_text("print(1)")
    first = source_digest(tmp_path)
    os.utime(tmp_path / "a.py", (1, 1))
    assert source_digest(tmp_path) == first
    (tmp_path / "a.py").write_text("print(2)")
    assert source_digest(tmp_path) != first


def test_copy_follows_the_image_symlinks(tmp_path):
    # bookworm's /bin is a link to usr/bin: a COPY to /bin/x lands in usr/bin.
    lower = tmp_path / "lower"
    (lower / "usr/bin").mkdir(parents=True)
    (lower / "bin").symlink_to("usr/bin")
    (lower / "tmp").mkdir()
    os.chmod(lower / "tmp", 0o1777)
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool").write_text("#!/bin/sh\n")
    assert resolve([lower], "/bin/tool", "t") == "usr/bin/tool"
    layer = tmp_path / "layer"
    layer.mkdir()
    step = CopyStep(
        name="COPY",
        items=[CopyItem(src / "tool", "/bin/"), CopyItem(src / "tool", "/tmp/x/tool")],
    )
    materialize_copy(step, layer, [lower])
    assert (layer / "usr/bin/tool").is_file()
    assert not (layer / "bin").exists()
    assert (layer / "tmp").stat().st_mode & 0o7777 == 0o1777  # parent mode kept


def test_keep_only_leaves_the_kept_paths_and_their_parents(tmp_path):
    (tmp_path / "app/.venv/bin").mkdir(parents=True)
    (tmp_path / "app/.venv/bin/python").write_text("x")
    (tmp_path / "app/junk").write_text("x")
    (tmp_path / "root/.cache").mkdir(parents=True)
    _keep_only(tmp_path, ("app/.venv",))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "app", "app/.venv", "app/.venv/bin", "app/.venv/bin/python",
    ]  # fmt: skip


def test_image_config_and_manifest_are_oci_documents():
    base = publish.Layer(
        LayerInfo("sha256:" + "a" * 64, "sha256:" + "b" * 64, 10), None, "stacks/x"
    )
    new = publish.Layer(
        LayerInfo("sha256:" + "c" * 64, "sha256:" + "d" * 64, 20), None, None, "add"
    )
    new = publish.Layer(new.info, path=__import__("pathlib").Path("/x"), created_by="add source")
    settings = ImageSettings(
        env={"PORT": "8080"}, cmd=["/bin/sh", "-c", "exec x"], exposed_ports=["8080/tcp"],
        labels={"paas.app": "demo"},
    )  # fmt: skip
    config = publish.image_config(settings, [base, new], created="2026-01-01T00:00:00Z",
                              base_history=[{"created_by": "debootstrap"}])  # fmt: skip
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "b" * 64, "sha256:" + "d" * 64]
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert [h["created_by"] for h in config["history"]] == ["debootstrap", "add source"]
    body = publish.canonical(config)
    manifest = publish.manifest(body, "sha256:" + "e" * 64, [base, new])
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["size"] == len(body)
    assert [layer["size"] for layer in manifest["layers"]] == [10, 20]
    assert json.loads(publish.canonical(manifest)) == manifest


def test_pyproject_dependencies_are_the_requirements(tmp_path):
    from paas.builds.engine.buildpacks.python import has_requirements, requirements_text

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["flask>=3", "gunicorn"]\n'
    )
    text, origin = requirements_text(tmp_path)
    assert origin == "pyproject.toml"
    assert text == "flask>=3\ngunicorn\n"
    assert has_requirements(text)
    assert not has_requirements("# only a comment\n\n")


def test_the_python_web_command_prefers_procfile_then_gunicorn_then_app_py(tmp_path):
    from paas.builds.engine.buildpacks.common import web_command
    from paas.builds.engine.buildpacks.python import default_command, requirement_names

    (tmp_path / "app.py").write_text("")
    names = requirement_names("Gunicorn==22.0  # server\nflask\n")
    assert default_command(tmp_path, names) == "gunicorn --bind 0.0.0.0:$PORT app:app"
    assert default_command(tmp_path, {"flask"}) == "python3 app.py"
    assert web_command({"web": "x"}, "python3 app.py", "Python") == "x"
    assert web_command({"worker": "w"}, None, "Python") == "w"


def test_dockerignore_patterns_exceptions_and_directories():
    from paas.builds.engine.ignore import DockerIgnore

    ignore = DockerIgnore.parse("# comment\nnode_modules\n*.log\n!keep.log\n**/secret.txt\n")
    assert ignore.ignored("node_modules")
    assert ignore.ignored("node_modules/left-pad/index.js")  # below an ignored dir
    assert ignore.ignored("debug.log")
    assert not ignore.ignored("keep.log")
    assert not ignore.ignored("sub/debug.log")  # * stays within a segment
    assert ignore.ignored("a/b/secret.txt") and ignore.ignored("secret.txt")
    assert not ignore.ignored("server.js")


def test_copy_leaves_out_what_dockerignore_names(tmp_path):
    from paas.builds.engine.dockerfile import BaseImage, parse_dockerfile

    src = tmp_path / "src"
    (src / "node_modules/x").mkdir(parents=True)
    (src / "node_modules/x/i.js").write_text("x")
    (src / "server.js").write_text("s")
    (src / "debug.log").write_text("d")
    (src / ".dockerignore").write_text("node_modules\n*.log\n")
    plan = parse_dockerfile(
        "FROM stack\nCOPY . /app/\n", source_dir=src, stack_ref="r/s:1", registry_host="r:1",
        load_base=lambda ref: BaseImage(ref=ref, env={}),
    )  # fmt: skip
    lower = tmp_path / "lower"
    lower.mkdir()
    layer = tmp_path / "layer"
    layer.mkdir()
    step = plan.steps[-1]
    assert isinstance(step, CopyStep)
    materialize_copy(step, layer, [lower])
    assert sorted(p.name for p in (layer / "app").iterdir()) == [".dockerignore", "server.js"]
