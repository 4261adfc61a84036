"""Where tests leave files for people to look at (screenshots): the
directory named by PAAS_TEST_ARTIFACTS (or the older PAAS_SCREENSHOTS),
else tests/artifacts/ in the checkout (ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def artifact_dir() -> Path:
    named = os.environ.get("PAAS_TEST_ARTIFACTS") or os.environ.get("PAAS_SCREENSHOTS")
    path = Path(named) if named else ROOT / "tests" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path
