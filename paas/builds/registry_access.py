"""Who may do what in the platform's registry, from the control plane's side.

With ``PAAS_REGISTRY_TOKEN_KEY`` set, the registry runs in ``auth: token``
mode and trusts only tokens signed with that key (registry_tokens.py):

- the worker (builds, pruning, the deploy-from-image check) answers the
  registry's challenges itself with a token for exactly the scope asked;
- an agent gets, with each create, a pull token for the one repository of
  the image it is to run (:func:`registry_pull_token`), valid for
  ``PAAS_REGISTRY_TOKEN_TTL_S``. It holds no password of the registry.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from django.conf import settings

from paas.builds.registry_tokens import TokenSigner, parse_scopes, pull_access

log = logging.getLogger(__name__)

# The worker's own tokens answer one request's challenge: minutes are plenty.
_PLATFORM_TTL_S = 300


@functools.cache
def _signer(key_file: str, cert_file: str) -> TokenSigner:
    return TokenSigner(Path(key_file), Path(cert_file))


def registry_signer() -> TokenSigner | None:
    if not settings.PAAS_REGISTRY_TOKEN_KEY:
        return None
    return _signer(settings.PAAS_REGISTRY_TOKEN_KEY, settings.PAAS_REGISTRY_TOKEN_CERT)


def platform_token(scope: str) -> str:
    """A token for what the registry asked the platform's own client for
    (pull, push, delete of a repository, the catalog)."""
    signer = registry_signer()
    assert signer is not None, "platform_token needs PAAS_REGISTRY_TOKEN_KEY"
    return signer.mint(parse_scopes(scope), subject="paas-worker", ttl_s=_PLATFORM_TTL_S)


def registry_pull_token(*, repository: str, subject: str) -> str | None:
    """A pull token for one repository of the platform's registry, or None
    when the registry is not in token mode."""
    signer = registry_signer()
    if signer is None:
        return None
    log.info("pull token for %s to %s", repository, subject)
    return signer.mint(
        pull_access(repository), subject=subject, ttl_s=settings.PAAS_REGISTRY_TOKEN_TTL_S
    )
