"""Settings from the environment: one set of rules for every process.

The control plane (``paas/env.py``) and the agent (``runtime_agent/config.py``)
read their variables through :class:`Settings`, so a value means the same in
both:

- every variable ``NAME`` may instead come from ``NAME_FILE``, a file holding
  the value (for secrets kept out of ``ps`` and environment dumps); setting
  both is an error;
- an empty value means unset, so the default applies (like ``${NAME:-x}``);
- paths, and the ``_FILE`` paths themselves, must be absolute: a relative
  one would depend on the directory the process happened to start in;
- numbers must be finite, and within the bounds the caller gives;
- every bad value raises :class:`SettingError` naming the variable, which
  each process turns into a stop at start, never into odd behaviour later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path

from runtime_agent.host.errors import HostError

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(HostError):
    """A variable has a bad value (or a bad ``_FILE``); the message names it."""

    code = "config_error"
    permanent = True


class Settings:
    """Typed readers over ``env`` for variables named ``prefix + name``."""

    def __init__(self, env: Mapping[str, str], prefix: str = "") -> None:
        self.env = env
        self.prefix = prefix

    def raw(self, name: str) -> str | None:
        """The value of ``name`` or of ``name_FILE``; None when unset or empty."""
        var = self.prefix + name
        value = self.env.get(var) or None
        file_value = self.env.get(var + "_FILE") or None
        if value is not None and file_value is not None:
            raise SettingError(f"set {var} or {var}_FILE, not both")
        if file_value is None:
            return value
        return self._read_file(var + "_FILE", file_value)

    def _read_file(self, var: str, value: str) -> str:
        path = Path(value)
        if not path.is_absolute():
            raise SettingError(f"{var} must be an absolute path, got {value!r}")
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingError(f"{var}: cannot read {path}: {exc}") from None
        if not text:
            raise SettingError(f"{var}: {path} is empty")
        return text

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise SettingError(f"{self.prefix}{name}={value!r} is not a boolean (use 1/0, true/false)")

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingError(f"{self.prefix}{name}={value!r} is not a whole number") from None
        self._check_bounds(name, number, minimum, maximum)
        return number

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingError(f"{self.prefix}{name}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise SettingError(f"{self.prefix}{name}={value!r} is not a finite number")
        self._check_bounds(name, number, minimum, maximum)
        return number

    def _check_bounds(
        self, name: str, number: float, minimum: float | None, maximum: float | None
    ) -> None:
        if minimum is not None and number < minimum:
            raise SettingError(f"{self.prefix}{name}={number} is below the minimum of {minimum}")
        if maximum is not None and number > maximum:
            raise SettingError(f"{self.prefix}{name}={number} is above the maximum of {maximum}")

    def path(self, name: str, default: Path) -> Path:
        found = self.optional_path(name)
        return default if found is None else found

    def optional_path(self, name: str) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        if not Path(value).is_absolute():
            raise SettingError(f"{self.prefix}{name} must be an absolute path, got {value!r}")
        return Path(value)

    def items(self, name: str, default: list[str]) -> list[str]:
        """A comma-separated list; blanks between commas are dropped."""
        value = self.raw(name)
        if value is None:
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def matching(self, name: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        """A name the kernel or a tool will be handed: ``pattern`` must match
        all of it; ``what`` says in words what it may be."""
        value = self.text(name, default)
        if not pattern.fullmatch(value):
            raise SettingError(f"{self.prefix}{name} must be {what}, got {value!r}")
        return value

    def log_level(self, name: str, default: str = "INFO") -> str:
        """A logging level name, in any case: DEBUG, INFO, WARNING, ERROR, CRITICAL."""
        value = self.text(name, default).upper()
        if value not in _LOG_LEVELS:
            raise SettingError(
                f"{self.prefix}{name} must be one of {', '.join(_LOG_LEVELS)}, got {value!r}"
            )
        return value

    def listen(self, name: str, default: str) -> tuple[str, int]:
        """``host:port`` (``[::1]:7070`` for IPv6)."""
        value = self.text(name, default)
        host, sep, port_text = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SettingError(
                f"{self.prefix}{name} must be host:port like 127.0.0.1:7070, got {value!r}"
            )
        return host, int(port_text)

    def subnet(self, name: str, default: str, *, max_prefix: int = 29) -> IPv4Network:
        """An IPv4 network with room for a gateway and a few addresses."""
        value = self.text(name, default)
        try:
            subnet = IPv4Network(value, strict=True)
        except ValueError as exc:
            raise SettingError(
                f"{self.prefix}{name} must be an IPv4 network like {default}: {exc}"
            ) from None
        if subnet.prefixlen > max_prefix:
            raise SettingError(
                f"{self.prefix}{name} is too small ({value}); use /{max_prefix} or larger"
            )
        return subnet
