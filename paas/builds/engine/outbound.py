"""What every RUN step gets from the host besides its own command: the
host's CA bundle and proxy settings (so pip, npm, curl and Python's ssl
reach indexes behind a TLS-inspecting proxy or with a private CA), and the
build's secrets as files under /run/secrets.

All of it is bind-mounted (read-only) and set in the step's environment at
run time only: none of it is part of a cache key, a layer (the mount points
are dropped from the upper directory) or the image's config. A step's own
environment (a Dockerfile ENV) wins over these defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from paas.builds.engine.config import HostTrust
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import BindMount

CA_BUNDLE_MOUNT = "/run/paas/ca-certificates.crt"
SECRETS_MOUNT = "/run/secrets"
# Every variable the common tools read a CA bundle from.
CA_VARIABLES = (
    "SSL_CERT_FILE",  # Python's ssl, OpenSSL
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
)
# A build secret's name, also its file name under /run/secrets (buildvars checks it too).
SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def trust_env(trust: HostTrust) -> dict[str, str]:
    env: dict[str, str] = {}
    if trust.ca_bundle is not None:
        env.update(dict.fromkeys(CA_VARIABLES, CA_BUNDLE_MOUNT))
    for name, value in (
        ("HTTP_PROXY", trust.http_proxy),
        ("HTTPS_PROXY", trust.https_proxy),
        ("NO_PROXY", trust.no_proxy),
    ):
        if value:
            env[name] = env[name.lower()] = value
    return env


def trust_mounts(trust: HostTrust) -> list[BindMount]:
    if trust.ca_bundle is None:
        return []
    if not trust.ca_bundle.is_file():
        raise BuildFailed(
            f"the build CA bundle {trust.ca_bundle} does not exist on this host "
            "(set PAAS_BUILD_CA_BUNDLE to the host's bundle, or to 'none' to mount none)",
            step="setup",
        )
    return [BindMount(trust.ca_bundle, CA_BUNDLE_MOUNT, read_only=True)]


def write_secrets(secrets: Mapping[str, str], directory: Path) -> list[BindMount]:
    """One file per secret in ``directory``, mounted read-only at
    /run/secrets. The directory's parent is root-only on the host; the
    directory and files are world-readable so that a step's user (or a
    user-namespaced root) can read them. Nothing when there are no secrets."""
    if not secrets:
        return []
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.parent.chmod(0o700)
    directory.mkdir(mode=0o755)
    for name, value in secrets.items():
        if not SECRET_NAME_RE.fullmatch(name):
            raise BuildFailed(f"build secret name {name!r} is not a plain file name", step="setup")
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
    return [BindMount(directory, SECRETS_MOUNT, read_only=True)]
