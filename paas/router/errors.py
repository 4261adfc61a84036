"""The router's errors: each says what was refused and what to do about it."""

from __future__ import annotations

from paas.core.errors import PaasError


class RouterError(PaasError):
    code = "router_error"
    status = 500


class InvalidRoute(RouterError):
    """A hostname, app name or upstream that may not reach the config."""

    code = "invalid_route"
    status = 400


class CertificateRejected(RouterError):
    """An uploaded certificate or key that nginx must not serve."""

    code = "certificate_rejected"
    status = 400


class RouterConfigRejected(RouterError):
    """``nginx -t`` refused the candidate config; the live one is untouched."""

    code = "router_config_rejected"
    status = 500


class RouterReloadFailed(RouterError):
    """nginx did not take the new config; the previous one is live again."""

    code = "router_reload_failed"
    status = 503
