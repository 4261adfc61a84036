"""A real OpenSSH server for a test: on a free loopback port, with a host key
made here (or given, so that a "restart" can keep or change it), accepting
one client key made here, as root (tests run as root), stopped by its PID.
Everything it reads is in the test's directory (its own sshd_config,
host key and authorized_keys): nothing of the machine's /etc/ssh or ~/.ssh."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, start_process, stop_process, wait_for_port

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: an absolute path
# sshd's privilege separation directory, compiled in; empty and shared.
PRIVSEP_DIR = Path("/run/sshd")


def make_key(path: Path) -> Path:
    """An ed25519 key pair at ``path`` and ``path``.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return path


def public_key(path: Path) -> str:
    """``TYPE BASE64`` of a key pair's public half."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


@dataclass
class SshServer:
    port: int
    host_key: Path
    client_key: Path
    log: Path

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_sshd(
    tmp: Path, *, host_key: Path, client_key: Path, port: int | None = None
) -> Iterator[SshServer]:
    tmp.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    port = port or free_port()
    authorized = tmp / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
        f"AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\nPermitUserRC no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nAllowUsers root\nAllowTcpForwarding no\n"
        "AllowAgentForwarding no\nX11Forwarding no\nPermitTTY no\nLogLevel VERBOSE\n"
    )
    log = tmp / "sshd.log"
    with open(log, "ab") as out:
        proc = start_process([SSHD, "-D", "-e", "-f", str(config)], stdout=out,
                             stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30, proc=proc)
        yield SshServer(port, host_key, client_key, log)
    finally:
        stop_process(proc)
