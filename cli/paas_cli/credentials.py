"""Where `paas login` keeps the platform's URL and the API token.

``$XDG_CONFIG_HOME/paas/credentials.json`` (``~/.config/...``), readable by
its owner only. ``PAAS_URL`` and ``PAAS_TOKEN`` in the environment win (for
scripts and CI), so nothing has to be written at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from paas_cli.errors import CliError


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str


def _path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "paas" / "credentials.json"


def load() -> Credentials:
    url, token = os.environ.get("PAAS_URL", ""), os.environ.get("PAAS_TOKEN", "")
    if not (url and token):
        try:
            data = json.loads(_path().read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise CliError(f"Cannot read {_path()}: {exc}. Run `paas login` again.") from exc
        url, token = url or data.get("url", ""), token or data.get("token", "")
    if not (url and token):
        raise CliError("Not logged in: run `paas login --url https://paas.example.com`.")
    return Credentials(url=url.rstrip("/"), token=token)


def save(creds: Credentials) -> Path:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before the token is written, never readable by others.
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": creds.url, "token": creds.token}, fh)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def forget() -> bool:
    try:
        _path().unlink()
    except FileNotFoundError:
        return False
    return True
