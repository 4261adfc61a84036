"""The control plane's settings readers, over the one settings helper both
processes share (:mod:`runtime_agent.host.settings`, where the rules are
written): ``<NAME>_FILE`` for any variable, empty means unset, absolute
paths, finite numbers. A bad value raises ImproperlyConfigured naming the
variable, so a typo in a deployment stops the process at start rather than
showing as odd behaviour later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

from runtime_agent.host.settings import SettingError, Settings

T = TypeVar("T")


def _read(get: Callable[[Settings], T]) -> T:
    # The environment as it is now: tests change it between calls.
    try:
        return get(Settings(os.environ))
    except SettingError as exc:
        raise ImproperlyConfigured(exc.message) from None


def env_str(name: str, default: str) -> str:
    return _read(lambda s: s.text(name, default))


def env_optional(name: str) -> str | None:
    return _read(lambda s: s.optional(name))


def env_log_level(name: str) -> str:
    return _read(lambda s: s.log_level(name))


def env_bool(name: str, default: bool) -> bool:
    return _read(lambda s: s.flag(name, default))


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _read(lambda s: s.integer(name, default, minimum=minimum))


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _read(lambda s: s.number(name, default, minimum=minimum))


def env_list(name: str, default: list[str]) -> list[str]:
    return _read(lambda s: s.items(name, default))


def env_path(name: str, default: Path) -> Path:
    return _read(lambda s: s.path(name, default))


def env_optional_path(name: str) -> Path | None:
    return _read(lambda s: s.optional_path(name))


def env_file(name: str, default: str, *, none_word: str | None = None) -> str:
    """An existing file, by absolute path, in its text form; the default
    when unset, and "" (no file) for an empty default or ``none_word``."""

    def get(s: Settings) -> str:
        value = s.text(name, default)
        if not value or (none_word is not None and value.lower() == none_word):
            return ""
        if not Path(value).is_absolute():
            raise SettingError(f"{name} must be an absolute path, got {value!r}")
        if not Path(value).is_file():
            raise SettingError(f"{name}={value!r} is not a file")
        return value

    return _read(get)


def env_subnet(name: str, default: str) -> str:
    """An IPv4 network, checked, in its text form."""
    return _read(lambda s: str(s.subnet(name, default)))


def env_name(name: str, default: str, pattern: re.Pattern[str], rule: str) -> str:
    """A name handed to the kernel or a tool, checked against ``pattern``."""
    return _read(lambda s: s.matching(name, default, pattern, rule))


def secret_key(name: str, data_dir: Path) -> str:
    """The env value, or one generated once and kept in the data directory."""
    value = _read(lambda s: s.optional(name))
    if value:
        return value
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    from django.core.management.utils import get_random_secret_key

    data_dir.mkdir(parents=True, exist_ok=True)
    key = get_random_secret_key() + get_random_secret_key()
    # Written with 0600 from the start: the key signs every session.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
