"""What `paas deploy` sends: the directory minus what .gitignore (at any
level) and .paasignore leave out, with git's rules for negation, anchoring,
directory-only patterns and excluded parents."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from paas_cli import archive
from paas_cli.errors import CliError


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _sent(source: Path, tmp_path: Path) -> list[str]:
    packed = archive.pack(source, tmp_path / "out.tar.gz")
    with tarfile.open(packed.path) as tar:
        return sorted(m.name for m in tar.getmembers() if not m.isdir())


def _git_would_send(source: Path) -> list[str]:
    """The same tree as git sees it (the reference for these rules)."""
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    out = subprocess.run(
        ["git", "-C", str(source), "ls-files", "--others", "--exclude-standard",
         "--exclude-from=.paasignore"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(out.split())


FILES = {
    ".gitignore": "*.log\n/build/\nnode_modules/\n!keep.log\nsecret?.txt\ndocs/**/*.tmp\n",
    ".paasignore": "tests/\n*.md\n",
    "app.py": "print('hi')\n",
    "README.md": "readme",
    "keep.log": "kept",
    "debug.log": "dropped",
    "build/out.bin": "dropped",
    "src/build/kept.py": "anchored /build/ only at the top",
    "node_modules/x/index.js": "dropped",
    "src/node_modules/y.js": "dropped at any depth",
    "secret1.txt": "dropped",
    "secret10.txt": "kept: ? is one character",
    "docs/a/b/c.tmp": "dropped",
    "docs/a/b/c.txt": "kept",
    "tests/test_app.py": "dropped by .paasignore",
    "sub/.gitignore": "local.cfg\n",
    "sub/local.cfg": "dropped by the nested .gitignore",
    "local.cfg": "kept: the nested rule is the sub directory's",
}


def test_it_leaves_out_what_git_would(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", FILES)
    sent = _sent(source, tmp_path)
    assert sent == _git_would_send(source)  # the same set as git's own reading
    assert "app.py" in sent and "keep.log" in sent and "src/build/kept.py" in sent
    assert "debug.log" not in sent and "tests/test_app.py" not in sent


def test_it_never_sends_the_git_directory_or_owners(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", {"app.py": "x"})
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    os.symlink("app.py", source / "link.py")
    packed = archive.pack(source, tmp_path / "out.tar.gz")
    with tarfile.open(packed.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert not [n for n in members if n == ".git" or n.startswith(".git/")]
    assert members["link.py"].issym() and members["link.py"].linkname == "app.py"
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, "")}


def test_an_empty_or_wholly_ignored_directory_is_refused(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src", {".paasignore": "*\n"})
    with pytest.raises(CliError, match="Nothing to deploy"):
        archive.pack(source, tmp_path / "out.tar.gz")
