"""What the router serves: plain, immutable values that the deploy code builds
from the desired state and hands to :func:`paas.router.services.router_apply`.

Every value that reaches nginx's config is checked here, at construction, so
no Route can exist that carries nginx syntax: hostnames are lowercase DNS
names, app names DNS labels, upstreams IP literals with a port. The renderer
quotes them as well (defence in depth), but it never sees anything else.

TLS: a Route carries at most one certificate, which must cover every one of
its hostnames. An app whose custom domain has a certificate therefore gets
two Routes (same app, same upstreams): one with its plain hostnames and one
with the TLS hostnames and their certificate (see :func:`app_routes`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from paas.router.errors import InvalidRoute

# A DNS label as RFC 1123 allows it, lowercase only (names are compared and
# written to nginx in one spelling; IDNs arrive as punycode "xn--" labels).
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_HOSTNAME = 253


def hostname_problem(name: object) -> str | None:
    """Why ``name`` is not a hostname the router accepts, or None if it is."""
    if not isinstance(name, str) or not name:
        return "a hostname must be a non-empty string"
    if len(name) > MAX_HOSTNAME:
        return f"a hostname is at most {MAX_HOSTNAME} characters; this one has {len(name)}"
    labels = name.split(".")
    if len(labels) < 2:
        return f"{name!r} has a single label: use a full domain such as www.example.com"
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            return (
                f"{name!r} is not a DNS name: each dot-separated label is 1-63 lowercase "
                "letters a-z, digits or hyphens, not starting or ending with a hyphen"
            )
    if labels[-1].isdigit():
        return f"{name!r} looks like an IP address; routes take domain names"
    return None


def validate_hostname(name: object) -> str:
    problem = hostname_problem(name)
    if problem:
        raise InvalidRoute(f"Hostname refused: {problem}.", hostname=str(name)[:300])
    assert isinstance(name, str)
    return name


def validate_app_label(name: object) -> str:
    if not isinstance(name, str) or not _LABEL_RE.fullmatch(name):
        raise InvalidRoute(
            f"App name refused: {str(name)[:80]!r} is not a DNS label "
            "(lowercase letters, digits and hyphens).",
        )
    return name


def hostname_matches(pattern: str, hostname: str) -> bool:
    """Does a certificate name (``www.example.com`` or ``*.example.com``)
    cover ``hostname``? A wildcard stands for exactly one whole label."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


@dataclass(frozen=True)
class TlsCert:
    """A validated certificate (leaf first, then its chain) and its private
    key, both as PEM. Make one with :func:`paas.router.certs.tls_cert_load`,
    which checks that they match, are in date and cover the domain."""

    cert_pem: str
    key_pem: str = field(repr=False)
    names: tuple[str, ...]  # the leaf's DNS subjectAltNames
    not_after: datetime  # aware, UTC: shown in the UI as the expiry
    fingerprint: str  # SHA-256 of the leaf, hex

    def __post_init__(self) -> None:
        # It names the router's files: hex and nothing else.
        if not re.fullmatch(r"[0-9a-f]{64}", self.fingerprint):
            raise InvalidRoute("A certificate's fingerprint must be 64 hex digits.")

    def covers(self, hostname: str) -> bool:
        return any(hostname_matches(name, hostname) for name in self.names)


@dataclass(frozen=True)
class Upstream:
    """One web instance: an IP literal and a port reachable from the router."""

    address: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.address)
        except (TypeError, ValueError):
            raise InvalidRoute(
                f"Upstream address refused: {str(self.address)[:80]!r} is not an IP address."
            ) from None
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidRoute(f"Upstream port refused: {self.port!r} is not a number.")
        if not 1 <= self.port <= 65535:
            raise InvalidRoute(f"Upstream port refused: {self.port} is not in 1-65535.")

    @property
    def netloc(self) -> str:
        """``10.0.0.2:8000`` or ``[fd00::2]:8000``, as nginx's ``server`` takes it."""
        ip = ipaddress.ip_address(self.address)
        return f"[{ip.compressed}]:{self.port}" if ip.version == 6 else f"{ip}:{self.port}"


@dataclass(frozen=True)
class Route:
    """Requests for any of ``hostnames`` go to ``upstreams``, round robin.

    No upstreams: the app answers 503 with a page saying it is not running.
    ``tls``: the hostnames are served over HTTPS with this certificate (it
    must cover each of them) and plain HTTP is redirected to HTTPS.
    """

    app: str
    hostnames: tuple[str, ...]
    upstreams: tuple[Upstream, ...]
    tls: TlsCert | None = None

    def __post_init__(self) -> None:
        validate_app_label(self.app)
        # Lists are accepted and frozen, so callers may pass what they have.
        object.__setattr__(self, "hostnames", tuple(self.hostnames))
        object.__setattr__(self, "upstreams", tuple(dict.fromkeys(self.upstreams)))
        if not self.hostnames:
            raise InvalidRoute(f"The route of {self.app} has no hostname.")
        for name in self.hostnames:
            validate_hostname(name)
        if len(set(self.hostnames)) != len(self.hostnames):
            raise InvalidRoute(f"The route of {self.app} lists a hostname twice.")
        for upstream in self.upstreams:
            if not isinstance(upstream, Upstream):
                raise InvalidRoute(f"The route of {self.app} has an upstream of the wrong type.")
        if self.tls is not None:
            for name in self.hostnames:
                if not self.tls.covers(name):
                    raise InvalidRoute(
                        f"The certificate for {self.app} does not cover {name} "
                        f"(it names {', '.join(self.tls.names) or 'no DNS name'})."
                    )


def app_routes(
    *,
    app: str,
    hostnames: Sequence[str],
    upstreams: Iterable[Upstream],
    certificates: Mapping[str, TlsCert] | None = None,
) -> list[Route]:
    """The Routes of one app: its hostnames without a certificate in one
    Route, and one Route per certificate with the hostnames it serves."""
    certificates = certificates or {}
    ups = tuple(upstreams)
    plain = tuple(h for h in hostnames if h not in certificates)
    routes = [Route(app=app, hostnames=plain, upstreams=ups)] if plain else []
    by_cert: dict[str, tuple[TlsCert, list[str]]] = {}
    for name in hostnames:
        if name in certificates:
            cert = certificates[name]
            by_cert.setdefault(cert.fingerprint, (cert, []))[1].append(name)
    for cert, names in by_cert.values():
        routes.append(Route(app=app, hostnames=tuple(names), upstreams=ups, tls=cert))
    return routes
