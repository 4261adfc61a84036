from pathlib import Path

import pytest

from paas.builds.engine.detect import AppKind, detect, detect_kind
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.procfile import parse_procfile, read_procfile


def write(root: Path, rel: str, text: str = "x") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_a_dockerfile_wins_over_every_other_kind(tmp_path):
    for rel in ("Dockerfile", "requirements.txt", "package.json", "index.html"):
        write(tmp_path, rel)
    assert detect_kind(tmp_path) == (AppKind.DOCKERFILE, "Dockerfile")


def test_python_wins_over_node_and_static(tmp_path):
    for rel in ("pyproject.toml", "package.json", "index.html"):
        write(tmp_path, rel)
    assert detect_kind(tmp_path) == (AppKind.PYTHON, "pyproject.toml")


def test_node_wins_over_static(tmp_path):
    write(tmp_path, "package.json")
    write(tmp_path, "public/index.html")
    assert detect_kind(tmp_path)[0] == AppKind.NODE


def test_an_index_html_in_public_is_a_static_site(tmp_path):
    write(tmp_path, "public/index.html")
    assert detect_kind(tmp_path) == (AppKind.STATIC, "public/index.html")


def test_it_fails_listing_what_it_looked_for(tmp_path):
    write(tmp_path, "README.md")
    with pytest.raises(BuildFailed) as exc:
        detect_kind(tmp_path)
    for name in ("Dockerfile", "requirements.txt", "pyproject.toml", "package.json", "index.html"):
        assert name in exc.value.message
    assert exc.value.step == "detect"


def test_a_symlinked_marker_file_does_not_count(tmp_path):
    write(tmp_path, "real.txt")
    (tmp_path / "requirements.txt").symlink_to("real.txt")
    with pytest.raises(BuildFailed):
        detect_kind(tmp_path)


def test_procfile_keeps_every_process_type_in_order():
    text = "# processes\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker: python3 w.py\n"
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python3 w.py",
    }


def test_procfile_names_a_bad_line():
    with pytest.raises(BuildFailed, match="line 2"):
        parse_procfile("web: a\nthis is not a process\n")


def test_procfile_refuses_a_duplicated_type():
    with pytest.raises(BuildFailed, match="'web' is defined twice"):
        parse_procfile("web: a\nweb: b\n")


def test_no_procfile_means_no_process_types(tmp_path):
    assert read_procfile(tmp_path) == {}


@pytest.mark.parametrize("script", ["app.py", "main.py", "wsgi.py"])
def test_a_lone_python_script_is_a_python_app(tmp_path, script):
    write(tmp_path, script)
    found = detect(tmp_path)
    assert (found.kind, found.file) == (AppKind.PYTHON, script)
    assert "no dependency file" in found.reason


def test_a_dependency_file_is_named_as_the_reason(tmp_path):
    write(tmp_path, "app.py")
    write(tmp_path, "requirements.txt", "flask\n")
    found = detect(tmp_path)
    assert found.file == "requirements.txt"
    assert "dependencies are installed" in found.reason


def test_a_node_app_with_a_helper_app_py_stays_node(tmp_path):
    write(tmp_path, "package.json", "{}")
    write(tmp_path, "app.py")
    assert detect_kind(tmp_path)[0] == AppKind.NODE


@pytest.mark.parametrize(
    "command",
    ["python3 web.py --port $PORT", "python server.py", "gunicorn app:app",
     "exec python3 -m http.server $PORT", "PYTHONUNBUFFERED=1 uvicorn api:app"],
)  # fmt: skip
def test_a_procfile_running_python_is_a_python_app(tmp_path, command):
    write(tmp_path, "Procfile", f"web: {command}\n")
    found = detect(tmp_path)
    assert (found.kind, found.file) == (AppKind.PYTHON, "Procfile")
    assert "'web' process runs python" in found.reason


def test_a_procfile_running_something_else_is_not_python(tmp_path):
    write(tmp_path, "Procfile", "web: ./server --port $PORT\n")
    with pytest.raises(BuildFailed):
        detect(tmp_path)


def test_a_python_procfile_wins_over_a_static_index(tmp_path):
    write(tmp_path, "Procfile", "web: python3 serve.py\n")
    write(tmp_path, "index.html")
    assert detect_kind(tmp_path) == (AppKind.PYTHON, "Procfile")


def test_the_error_names_the_small_apps_and_the_readme_section(tmp_path):
    write(tmp_path, "notes.txt")
    with pytest.raises(BuildFailed) as exc:
        detect(tmp_path)
    for name in ("app.py", "main.py", "wsgi.py", "Procfile running python"):
        assert name in exc.value.message
    assert "Making your app buildable" in exc.value.message
    assert "README.md#making-your-app-buildable" in exc.value.message


def test_the_readme_section_the_error_links_exists_and_explains_both_ways():
    """The anchor in the error is the one GitHub makes of the heading, and
    the section shows a Procfile and a Dockerfile."""
    import re

    from paas.builds.engine.detect import HELP

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (anchor,) = re.findall(r"README\.md#([a-z0-9-]+)", HELP)
    sections = re.split(r"^#+ ", readme, flags=re.M)
    (section,) = [s for s in sections if re.sub(r"\W+", "-", s.split("\n")[0].lower()) == anchor]
    assert "web: python3" in section and "Procfile" in section
    assert "Dockerfile" in section and "FROM stack" in section


@pytest.mark.parametrize(
    ("command", "requirements", "ok"),
    [
        ("gunicorn app:app", None, False),
        ("gunicorn app:app", "flask\n", False),
        ("exec gunicorn --bind 0.0.0.0:$PORT app:app", "flask\ngunicorn==22\n", True),
        ("PYTHONUNBUFFERED=1 uvicorn api:app", "uvicorn[standard]\n", True),
        ("waitress-serve app:app", "Waitress\n", True),
        ("python3 server.py", None, True),
    ],
)
def test_a_procfile_server_must_be_in_the_requirements(command, requirements, ok):
    from paas.builds.engine.buildpacks.python import (
        check_server_installed,
        requirement_names,
    )

    names = requirement_names(requirements or "")
    origin = "requirements.txt" if requirements is not None else ""
    if ok:
        check_server_installed(command, names, origin)
        return
    with pytest.raises(BuildFailed) as exc:
        check_server_installed(command, names, origin)
    assert "add 'gunicorn' to requirements.txt" in exc.value.message
    assert exc.value.step == "detect"
