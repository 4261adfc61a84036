"""/etc/hosts and /etc/resolv.conf for a container (bind-mounted by the spec).

A process in a fresh network namespace can hang for seconds resolving its own
name (Python's http.server calls getfqdn() on bind), so the hostname and the
container address are always in /etc/hosts, and resolv.conf never points at a
server the container cannot reach: the host's loopback resolvers (e.g.
systemd-resolved's 127.0.0.53) are meaningless inside another netns.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from runtime_agent.host.errors import InvalidRequest

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*$")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# Fail fast rather than hang: one try, one second.
FALLBACK_OPTIONS = "options timeout:1 attempts:1"
COPIED_OPTIONS = "options timeout:2 attempts:2"


def hosts_text(hostname: str, address: str) -> str:
    short = hostname.split(".")[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{names}\n"


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.split("%")[0]).is_loopback
    except ValueError:
        return True  # not an address we understand: do not hand it on


def resolv_text(host_resolv: str) -> str:
    """The host's usable nameservers and search list, or a fail-fast stub."""
    servers: list[str] = []
    search: list[str] = []
    for line in host_resolv.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and not _is_loopback(fields[1]):
            servers.append(fields[1])
        elif fields and fields[0] in ("search", "domain"):
            search = fields[1:]
    if not servers:
        return f"# the host has only loopback resolvers; fail fast instead\n{FALLBACK_OPTIONS}\n"
    lines = [f"nameserver {s}" for s in servers[:3]]  # glibc uses at most three
    if search:
        lines.append("search " + " ".join(search))
    lines.append(COPIED_OPTIONS)
    return "\n".join(lines) + "\n"


def host_nameservers(host_resolv_conf: Path = HOST_RESOLV_CONF) -> list[ipaddress.IPv4Address]:
    """The IPv4 nameservers :func:`resolv_text` hands to containers."""
    try:
        text = host_resolv_conf.read_text()
    except FileNotFoundError:
        return []
    servers = []
    for line in resolv_text(text).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "nameserver":
            try:
                servers.append(ipaddress.IPv4Address(fields[1]))
            except ValueError:
                continue  # IPv6: containers have none
    return servers


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_etc_files(
    dir: Path, hostname: str, address: str, *, host_resolv_conf: Path = HOST_RESOLV_CONF
) -> tuple[Path, Path]:
    """Write ``dir/hosts`` and ``dir/resolv.conf``; return their paths."""
    if not HOSTNAME_RE.fullmatch(hostname):
        raise InvalidRequest(f"hostname {hostname!r} is not a valid host name", field="hostname")
    ipaddress.IPv4Address(address)  # raises on garbage before we write it anywhere
    dir.mkdir(parents=True, exist_ok=True)
    try:
        host_resolv = host_resolv_conf.read_text()
    except FileNotFoundError:
        host_resolv = ""
    hosts_path, resolv_path = dir / "hosts", dir / "resolv.conf"
    _write_atomic(hosts_path, hosts_text(hostname, address))
    _write_atomic(resolv_path, resolv_text(host_resolv))
    return hosts_path, resolv_path
