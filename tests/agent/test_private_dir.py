"""private_dir: the roots the platform keeps its files under admit no other
local user, whether they are new or were made earlier with a looser mode."""

from __future__ import annotations

import os
import stat

from runtime_agent.host.private import private_dir


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_it_makes_a_missing_directory_with_the_mode_asked(tmp_path):
    assert _mode(private_dir(tmp_path / "a" / "root")) == 0o700
    assert _mode(private_dir(tmp_path / "shared", 0o750)) == 0o750


def test_it_takes_away_what_other_users_had_and_keeps_the_rest(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o775)
    private_dir(loose)
    assert _mode(loose) == 0o770


def test_it_leaves_a_private_directory_alone(tmp_path):
    tight = tmp_path / "tight"
    tight.mkdir(mode=0o700)
    before = tight.stat().st_ctime_ns
    private_dir(tight, 0o750)
    assert _mode(tight) == 0o700
    assert tight.stat().st_ctime_ns == before


def test_a_mode_that_lets_others_pass_keeps_only_passage(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    private_dir(shared, 0o751)
    assert _mode(shared) == 0o751
    assert _mode(private_dir(tmp_path / "new", 0o751)) == 0o751
