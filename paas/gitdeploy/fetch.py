"""Fetching an app's commit from its configured repository (for webhooks).

The URL was checked when it was set (https or ssh only) and git is held to
the same rule at run time: ``protocol.allow=never`` with only https and ssh
allowed (so no file://, no ext::, not after a redirect either), a fresh bare
repository per fetch (nothing local is shared, no hard links), no tags, no
submodules, hooks off, every object checked. Credentials never appear in an
argv: an https token travels in an extra header scoped to the repository's
URL (in the environment of git alone), an ssh key in a 0600 file of the
fetch's own directory.

The repository's host is resolved here, once: an address that is not
public (loopback, private, link-local...) is refused unless
``PAAS_GIT_FETCH_ALLOWED_NETWORKS`` has it, and git is pinned to the address
checked (curl's resolve list, ssh's HostName), so a second lookup cannot
lead it elsewhere.

Over ssh the host's key is checked strictly against the app's pinned keys
(paas/gitdeploy/hostkeys.py): set by the operator, or, when none is set,
accepted at the first successful fetch and pinned from then on (trust on
first use); a different key is refused with :class:`HostKeyRefused`, whose
message says what to do. ssh reads only files of the fetch's directory
(``-F`` config, known_hosts, key): nothing from ~/.ssh or /etc/ssh.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import shlex
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from paas.core.errors import ValidationFailed
from paas.gitdeploy.git import git_run
from paas.gitdeploy.hostkeys import HostKeyOrigin, host_keys_validate, keys_seen, known_hosts_text
from paas.gitdeploy.models import GitSettings
from paas.gitdeploy.refs import SHA_RE, branch_validate
from paas.gitdeploy.services import (
    HOST_RE,
    SCP_RE,
    repo_credentials_of,
    repo_url_validate,
    ssh_host_keys_record_first_use,
)
from runtime_agent.host.errors import CommandFailed
from runtime_agent.host.private import private_dir

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host_port(url: str) -> tuple[str, int]:
    scp = SCP_RE.fullmatch(url)
    if scp:
        return scp["host"], 22
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 22)


def _allowed(ip: IpAddress) -> bool:
    if ip.is_global and not ip.is_multicast:
        return True
    return any(ip in ipaddress.ip_network(n) for n in settings.PAAS_GIT_FETCH_ALLOWED_NETWORKS)


def checked_address(url: str) -> tuple[str, int, IpAddress]:
    """The repository's host, port and the one address git will use."""
    host, port = _host_port(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValidationFailed(f"Cannot resolve {host!r}.") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _allowed(ip):
            return host, port, ip
    raise ValidationFailed(
        f"{host} resolves only to addresses that are not public ({infos[0][4][0]}): "
        "the platform does not fetch from its own networks."
    )


def _https_config(url: str, credentials: str, pin: tuple[str, int, IpAddress]) -> dict[str, str]:
    host, port, ip = pin
    address = f"[{ip}]" if ip.version == 6 else str(ip)
    config = {
        "http.sslVerify": "true",
        "http.followRedirects": "false",
        "http.curloptResolve": f"{host}:{port}:{address}",
    }
    if settings.PAAS_GIT_FETCH_CA_BUNDLE:
        config["http.sslCAInfo"] = settings.PAAS_GIT_FETCH_CA_BUNDLE
    if credentials:
        user, sep, password = credentials.partition(":")
        pair = credentials if sep else f"git:{user}"
        token = base64.b64encode(pair.encode()).decode()
        config[f"http.{url}.extraHeader"] = f"Authorization: Basic {token}"
    return config


class HostKeyRefused(ValidationFailed):
    """The repository's host presented a key other than the pinned one(s)."""


@dataclass(frozen=True)
class SshSetup:
    config: dict[str, str]  # git settings
    known_hosts: Path
    alias: str  # the name the keys are filed under (ssh's HostKeyAlias)
    pinned: list[str]  # empty: trust on first use
    origin: str  # HostKeyOrigin of the pinned keys


def _ssh_setup(scratch: Path, credentials: str, pin: tuple[str, int, IpAddress],
               row: GitSettings) -> SshSetup:  # fmt: skip
    """ssh's whole configuration for one fetch, in files of the fetch's own
    directory: ``-F`` (so no ~/.ssh/config, no system ssh_config), a private
    known_hosts (no ~/.ssh/known_hosts, no /etc/ssh/ssh_known_hosts), and
    only the app's key (no default identities, no agent)."""
    host, _, ip = pin
    if not (HOST_RE.fullmatch(host) or _is_ip(host)):  # it goes into a config file
        raise ValidationFailed(f"Bad repository host {host!r}.")
    keys = host_keys_validate(row.ssh_host_keys)
    known_hosts = scratch / "known_hosts"
    _write_private(known_hosts, known_hosts_text(host, keys))
    identity = "none"
    if credentials:
        identity = str(scratch / "key")
        _write_private(Path(identity), credentials.strip() + "\n")
    options = {
        "BatchMode": "yes",
        # Pinned keys only; with none pinned, accept and record the first seen.
        "StrictHostKeyChecking": "yes" if keys else "accept-new",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "UpdateHostKeys": "no",  # never learn other keys from the server
        "CheckHostIP": "no",
        "HostName": str(ip),
        "HostKeyAlias": host,
        "IdentitiesOnly": "yes",
        "IdentityFile": identity,
        "IdentityAgent": "none",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "PermitLocalCommand": "no",
        "ControlMaster": "no",
        "ControlPath": "none",
        "LogLevel": "ERROR",
    }
    ssh_config = scratch / "ssh_config"
    _write_private(ssh_config, "".join(f'{k} "{v}"\n' for k, v in options.items()))
    # git runs core.sshCommand through the shell: it holds only ssh's path and
    # the platform's own config file (quoted), nothing the tenant wrote.
    command = shlex.join(["/usr/bin/ssh", "-F", str(ssh_config)])
    return SshSetup({"core.sshCommand": command}, known_hosts, host, keys, row.ssh_host_keys_origin)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _refused_host_key(ssh: SshSetup, url: str, stderr: str) -> HostKeyRefused | None:
    if not ssh.pinned or "Host key verification failed" not in stderr:
        return None
    if ssh.origin == HostKeyOrigin.FIRST_USE:
        where = "the key it presented at the first fetch, which the platform pinned"
    else:
        where = 'the key(s) set on the app\'s "Deploy with git" page'
    return HostKeyRefused(
        f"Refused to fetch {url}: the ssh host key of {ssh.alias} is not {where}. Someone may "
        f"be intercepting the connection, or the host's key was changed. Check the host's key "
        f"fingerprints with its operator (e.g. `ssh-keyscan {ssh.alias} | ssh-keygen -lf -`), "
        f'then paste the new key on the app\'s "Deploy with git" page (or clear the keys '
        f"there to trust the next key seen).",
        field="ssh_host_keys",
    )


@contextmanager
def fetched_commit(*, row: GitSettings, branch: str, sha: str) -> Iterator[Path]:
    """A scratch bare repository holding ``sha`` from the app's repository,
    where ``sha`` is on ``branch`` (its tip or behind it). Removed after."""
    if not SHA_RE.fullmatch(sha):
        raise ValidationFailed("The event names no valid commit.", field="after")
    url = repo_url_validate(row.repo_url)  # checked again: the rule may have tightened
    branch = branch_validate(branch)
    scratch = Path(tempfile.mkdtemp(prefix="git-fetch-", dir=private_dir(Path(settings.BUILD_DIR))))
    try:
        repo = scratch / "repo.git"
        git_run(["init", "--bare", "--quiet", "--template=", str(repo)])
        credentials = repo_credentials_of(row=row)
        pin = checked_address(url)
        ssh = None
        if url.startswith("https://"):
            config = _https_config(url, credentials, pin)
        else:
            ssh = _ssh_setup(scratch, credentials, pin, row)
            config = ssh.config
        env = {k: os.environ[k] for k in PROXY_VARS if os.environ.get(k)}
        tip = f"refs/fetched/{branch}"
        try:
            git_run(
                ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                 "--no-write-fetch-head", "--", url, f"+refs/heads/{branch}:{tip}"],
                repo=repo, config=config, env=env, timeout=settings.PAAS_GIT_FETCH_TIMEOUT_S,
            )  # fmt: skip
        except CommandFailed as exc:
            refused = ssh and _refused_host_key(ssh, url, exc.stderr)
            if refused:
                raise refused from None
            raise ValidationFailed(f"Fetching {url} failed: {exc.stderr.strip()[-500:]}") from None
        if ssh and not ssh.pinned:  # trusted on first use: pinned from now on
            seen = keys_seen(ssh.known_hosts.read_text(), ssh.alias)
            ssh_host_keys_record_first_use(row=row, keys=seen)
        on_branch = git_run(["merge-base", "--is-ancestor", sha, tip], repo=repo, check=False,
                            failure_expected=True)  # fmt: skip
        if on_branch.returncode != 0:
            raise ValidationFailed(f"Commit {sha[:12]} is not on {branch} of {url}.")
        yield repo
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
