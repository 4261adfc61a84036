from pathlib import Path

import pytest

from paas.builds.engine.dockerfile import BaseImage, parse_dockerfile
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import CopyStep, RunStep

REGISTRY = "127.0.0.1:5999"
STACK = f"{REGISTRY}/stacks/bookworm:20260101"
BASE_PATH = "/usr/bin:/bin"


def plan(source: Path, text: str, **kwargs):
    loaded: list[str] = []

    def load_base(ref: str) -> BaseImage:
        loaded.append(ref)
        return BaseImage(ref=ref, env={"PATH": BASE_PATH}, cmd=["/bin/bash"])

    result = parse_dockerfile(
        text, source_dir=source, stack_ref=STACK, registry_host=REGISTRY, load_base=load_base,
        **kwargs,
    )  # fmt: skip
    return result, loaded


def test_from_stack_uses_the_platform_stack(tmp_path):
    result, loaded = plan(tmp_path, "FROM stack\n")
    assert loaded == [STACK]
    assert result.base == STACK
    assert result.settings.cmd == ["/bin/bash"]  # inherited from the base


def test_from_a_name_means_an_image_in_the_platform_registry(tmp_path):
    _, loaded = plan(tmp_path, "FROM myapp:v3\n", base_allowed=lambda ref: True)
    assert loaded == [f"{REGISTRY}/myapp:v3"]


def test_from_an_image_the_policy_refuses_fails_naming_the_line_before_loading(tmp_path):
    asked: list[str] = []

    def policy(ref: str) -> bool:
        asked.append(ref)
        return False

    with pytest.raises(BuildFailed, match="Dockerfile line 2: FROM other:v1: a build may"):
        plan(tmp_path, "ARG X=1\nFROM other:v1\n", base_allowed=policy)
    assert asked == [f"{REGISTRY}/other:v1"]
    with pytest.raises(BuildFailed, match="Dockerfile line 1"):
        plan(tmp_path, "FROM other:v1\n")  # no policy: the stack only


def test_from_another_registry_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="only the stack"):
        plan(tmp_path, "FROM docker.io/library/python:3.12\n")


def test_an_unsupported_instruction_fails_naming_it_and_its_line(tmp_path):
    text = "FROM stack\nRUN true\n\nHEALTHCHECK CMD curl -f http://localhost/\n"
    with pytest.raises(BuildFailed) as exc:
        plan(tmp_path, text)
    assert "line 4" in exc.value.message
    assert "HEALTHCHECK" in exc.value.message
    assert exc.value.step == "Dockerfile line 4"


def test_a_second_from_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="multi-stage"):
        plan(tmp_path, "FROM stack AS build\nFROM stack\n")


def test_env_sees_the_base_image_env_and_earlier_args(tmp_path):
    text = 'FROM stack\nARG NAME=world\nENV PATH=/app/bin:$PATH GREETING="hello $NAME"\n'
    result, _ = plan(tmp_path, text)
    assert result.settings.env["PATH"] == f"/app/bin:{BASE_PATH}"
    assert result.settings.env["GREETING"] == "hello world"
    assert "NAME" not in result.settings.env  # ARGs do not reach the image


def test_run_gets_the_env_workdir_and_user_of_its_line(tmp_path):
    text = "FROM stack\nENV A=1\nWORKDIR /srv\nUSER 1000\nRUN echo $A\nENV A=2\n"
    result, _ = plan(tmp_path, text)
    run = [s for s in result.steps if isinstance(s, RunStep)][0]
    assert run.argv == ["/bin/sh", "-c", "echo $A"]
    assert run.env["A"] == "1"
    assert run.workdir == "/srv"
    assert run.user == "1000"
    assert result.settings.env["A"] == "2"


def test_exec_form_cmd_and_entrypoint(tmp_path):
    text = 'FROM stack\nENTRYPOINT ["python3"]\nCMD ["server.py", "--port", "8080"]\n'
    result, _ = plan(tmp_path, text)
    assert result.settings.entrypoint == ["python3"]
    assert result.settings.cmd == ["server.py", "--port", "8080"]


def test_a_new_entrypoint_drops_the_inherited_cmd(tmp_path):
    result, _ = plan(tmp_path, "FROM stack\nENTRYPOINT python3 -V\n")
    assert result.settings.cmd is None
    assert result.settings.entrypoint == ["/bin/sh", "-c", "python3 -V"]


def test_copy_resolves_destinations_against_workdir(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    result, _ = plan(tmp_path, "FROM stack\nWORKDIR /srv/app\nCOPY *.txt ./\nCOPY a.txt c.txt\n")
    copies = [s for s in result.steps if isinstance(s, CopyStep) and s.items]
    assert [i.destination for i in copies[0].items] == ["/srv/app/", "/srv/app/"]
    assert [i.source.name for i in copies[0].items] == ["a.txt", "b.txt"]
    assert copies[1].items[0].destination == "/srv/app/c.txt"


def test_copy_from_outside_the_context_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="outside the build context"):
        plan(tmp_path, "FROM stack\nCOPY ../etc/passwd /x\n")


def test_copy_through_a_symlink_leading_out_is_refused(tmp_path):
    (tmp_path / "out").symlink_to("/etc")
    with pytest.raises(BuildFailed, match="leads outside"):
        plan(tmp_path, "FROM stack\nCOPY out/passwd /x\n")


def test_copy_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(BuildFailed, match="nope.txt was not found"):
        plan(tmp_path, "FROM stack\nCOPY nope.txt /x\n")


def test_add_from_a_url_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="ADD from a URL"):
        plan(tmp_path, "FROM stack\nADD https://example.com/x.tgz /x\n")


def test_add_of_a_local_file_is_a_copy(tmp_path):
    (tmp_path / "conf.ini").write_text("x")
    result, _ = plan(tmp_path, "FROM stack\nADD conf.ini /etc/app/\n")
    step = result.steps[-1]
    assert isinstance(step, CopyStep) and step.items[0].destination == "/etc/app/"


def test_expose_and_label(tmp_path):
    result, _ = plan(tmp_path, 'FROM stack\nEXPOSE 8080 53/udp\nLABEL team="blue team"\n')
    assert result.settings.exposed_ports == ["8080/tcp", "53/udp"]
    assert result.settings.labels["team"] == "blue team"


def test_a_bad_port_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="EXPOSE"):
        plan(tmp_path, "FROM stack\nEXPOSE http\n")


def test_an_instruction_before_from_is_refused(tmp_path):
    with pytest.raises(BuildFailed, match="before FROM"):
        plan(tmp_path, "RUN true\nFROM stack\n")


def test_build_args_override_arg_defaults(tmp_path):
    result, _ = plan(tmp_path, "FROM stack\nARG V=1\nENV V=$V\n", build_args={"V": "2"})
    assert result.settings.env["V"] == "2"


def test_a_dockerfile_that_is_a_link_is_not_read(tmp_path):
    from paas.builds.engine.dockerfile import read_dockerfile

    secret = tmp_path / "host-secret"
    secret.write_text("FROM stack\nRUN echo host secret\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").symlink_to(secret)
    with pytest.raises(BuildFailed, match="regular file in the source, not a link"):
        read_dockerfile(src)
    (src / "Dockerfile").unlink()
    (src / "Dockerfile").write_text("FROM stack\n")
    assert read_dockerfile(src) == "FROM stack\n"
