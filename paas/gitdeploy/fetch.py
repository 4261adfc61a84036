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
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from paas.core.errors import ValidationFailed
from paas.gitdeploy.git import git_run
from paas.gitdeploy.models import GitSettings
from paas.gitdeploy.refs import SHA_RE, branch_validate
from paas.gitdeploy.services import SCP_RE, repo_credentials_of, repo_url_validate
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


def _ssh_config(scratch: Path, credentials: str, pin: tuple[str, int, IpAddress]) -> dict[str, str]:
    options = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"UserKnownHostsFile={scratch / 'known_hosts'}",
               "-o", f"HostName={pin[2]}", "-o", f"HostKeyAlias={pin[0]}"]  # fmt: skip
    if credentials:
        key = scratch / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(credentials.strip() + "\n")
        options += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
    # git runs core.sshCommand through the shell: quote every word.
    return {"core.sshCommand": " ".join(shlex.quote(o) for o in options)}


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
        if url.startswith("https://"):
            config = _https_config(url, credentials, pin)
        else:
            config = _ssh_config(scratch, credentials, pin)
        env = {k: os.environ[k] for k in PROXY_VARS if os.environ.get(k)}
        tip = f"refs/fetched/{branch}"
        try:
            git_run(
                ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                 "--no-write-fetch-head", "--", url, f"+refs/heads/{branch}:{tip}"],
                repo=repo, config=config, env=env, timeout=settings.PAAS_GIT_FETCH_TIMEOUT_S,
            )  # fmt: skip
        except CommandFailed as exc:
            raise ValidationFailed(f"Fetching {url} failed: {exc.stderr.strip()[-500:]}") from None
        on_branch = git_run(["merge-base", "--is-ancestor", sha, tip], repo=repo, check=False,
                            failure_expected=True)  # fmt: skip
        if on_branch.returncode != 0:
            raise ValidationFailed(f"Commit {sha[:12]} is not on {branch} of {url}.")
        yield repo
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
