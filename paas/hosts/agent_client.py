"""A small typed client for a runtime agent's HTTP API.

It speaks the shapes of :mod:`runtime_agent.wire` (the one module the control
plane and the agent share) and nothing of the daemon. Every failure becomes a
:class:`~paas.core.errors.PaasError`: :class:`AgentUnreachable` when nothing
answered (retry later), :class:`AgentUntrusted` when the agent's certificate
is not the one pinned when it joined, :class:`ContainerMissing` for a 404, and
:class:`AgentRefused` carrying the agent's own message otherwise.

Transport: HTTPS only, the peer's certificate checked against the host's pin
(``runtime_agent/host/tls.py``) right after the handshake, before the request
and its bearer credential are sent; no CA, no hostname check.

Container names are the idempotency key: ``create`` of a name that exists
with the same request answers 200 (the agent compares them), so a retried
task never makes a second container.
"""

from __future__ import annotations

import builtins
import http.client
import json
import logging
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from paas.core.errors import PaasError
from runtime_agent import wire
from runtime_agent.host.tls import BadFingerprint, CertificateMismatch, PinnedHTTPSConnection
from runtime_agent.wire import ContainerState, RestartPolicyName

log = logging.getLogger(__name__)


CREATE_TIMEOUT_S = 600.0


class AgentUnreachable(PaasError):
    code = "agent_unreachable"
    status = 503


class AgentUntrusted(PaasError):
    """The agent presented another certificate than the pinned one (or none
    is pinned): nothing is sent to it."""

    code = "agent_untrusted"
    status = 502


class AgentRefused(PaasError):
    code = "agent_refused"
    status = 502


class ContainerMissing(PaasError):
    code = "container_missing"
    status = 404


@dataclass(frozen=True)
class HostInfo:
    cpus: int
    memory_bytes: int
    memory_reserved_bytes: int
    containers: int
    api_version: str
    agent_pid: int | None


@dataclass(frozen=True)
class RouterSources:
    """An agent's answer to a push of router sources."""

    stored: list[str]  # in its ROOT/router_sources now
    in_effect: list[str]  # what its route ports answer
    overridden_by: str | None  # PAAS_AGENT_ROUTER_SOURCES, set on the host, wins
    message: str


def container_info(data: dict[str, Any]) -> wire.ContainerInfo:
    """A ContainerInfo from the agent's JSON (enums and nested shapes typed)."""
    ports = [wire.PortBinding(**p) for p in data.get("ports") or []]
    restart = data.get("restart") or {}
    return wire.ContainerInfo(
        name=data["name"],
        image=data.get("image", ""),
        image_digest=data.get("image_digest", ""),
        state=ContainerState(data["state"]),
        pid=data.get("pid"),
        exit_code=data.get("exit_code"),
        oom_killed=bool(data.get("oom_killed")),
        created_at=data.get("created_at"),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        restart_count=int(data.get("restart_count") or 0),
        next_restart_at=data.get("next_restart_at"),
        address=data.get("address"),
        ports=ports,
        restart=wire.RestartPolicy(
            name=RestartPolicyName(restart.get("name", "no")),
            max_retries=int(restart.get("max_retries") or 0),
        ),
        labels=dict(data.get("labels") or {}),
        error=data.get("error"),
    )


def _create_body(req: wire.CreateContainer) -> dict[str, Any]:
    body = asdict(req)
    body["restart"] = {"name": str(req.restart.name), "max_retries": req.restart.max_retries}
    return body


class AgentClient:
    def __init__(
        self, base_url: str, token: str, *, fingerprint: str, timeout_s: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.fingerprint = fingerprint
        self.timeout_s = timeout_s

    # --- transport -----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout_s: float | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout_s or self.timeout_s)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            status, raw = resp.status, resp.read()
        except CertificateMismatch as exc:
            log.error("%s", exc.message)
            raise AgentUntrusted(exc.message, url=self.base_url, **exc.data) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AgentUnreachable(
                f"The agent at {self.base_url} did not answer: {exc}", url=self.base_url
            ) from None
        finally:
            conn.close()
        if status >= 400:
            raise self._refusal(status, raw, path)
        return status, raw

    def _connection(self, timeout_s: float) -> PinnedHTTPSConnection:
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise AgentUntrusted(
                f"The agent URL {self.base_url} is not https://ADDRESS:PORT: agents serve "
                "their API over TLS only; re-join the host.", url=self.base_url
            )  # fmt: skip
        if not self.fingerprint:
            raise AgentUntrusted(
                f"No certificate is pinned for the agent at {self.base_url}: re-join the host "
                "so the platform learns which certificate to trust.", url=self.base_url
            )  # fmt: skip
        try:
            return PinnedHTTPSConnection(
                parts.hostname, parts.port, pin=self.fingerprint, where=self.base_url,
                timeout=timeout_s,
            )  # fmt: skip
        except BadFingerprint as exc:
            raise AgentUntrusted(
                f"The pin of the agent at {self.base_url} is unreadable ({exc.message}): "
                "re-join the host.", url=self.base_url
            ) from None  # fmt: skip

    def _refusal(self, status: int, raw: bytes, path: str) -> PaasError:
        try:
            payload = json.loads(raw)
            message = str(payload.get("message") or payload.get("error") or raw[:200])
        except (ValueError, AttributeError):
            message = raw[:200].decode(errors="replace")
        log.info("agent %s refused %s: %s %s", self.base_url, path, status, message)
        if status == 404:
            return ContainerMissing(message)
        if status in (401, 403):
            return AgentRefused(
                "The agent refused the platform's credential; re-join the host.", status=status
            )
        return AgentRefused(f"The agent said: {message}", status=status)

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        _, raw = self._request(method, path, body, **kw)
        return json.loads(raw) if raw.strip() else {}

    @staticmethod
    def _name(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    # --- host ----------------------------------------------------------------------

    def info(self, *, timeout_s: float | None = None) -> HostInfo:
        data = self._json("GET", "/v1/info", timeout_s=timeout_s)
        return HostInfo(
            cpus=int(data.get("cpus") or 0),
            memory_bytes=int(data.get("memory_bytes") or 0),
            memory_reserved_bytes=int(data.get("memory_reserved_bytes") or 0),
            containers=int(data.get("containers") or 0),
            api_version=str(data.get("api_version") or ""),
            agent_pid=(data.get("agent") or {}).get("pid"),
        )

    def set_router_sources(self, sources: builtins.list[str]) -> RouterSources:
        """Who the host's route ports answer, from now on."""
        try:
            data = self._json("PUT", "/v1/router-sources", {"router_sources": sources})
        except ContainerMissing:
            raise AgentRefused(
                f"The agent at {self.base_url} takes no router sources (an older agent): "
                "upgrade it, or set PAAS_AGENT_ROUTER_SOURCES there and restart it."
            ) from None
        return RouterSources(
            stored=[str(s) for s in data.get("router_sources") or []],
            in_effect=[str(s) for s in data.get("in_effect") or []],
            overridden_by=data.get("overridden_by") or None,
            message=str(data.get("message") or ""),
        )

    # --- containers ------------------------------------------------------------------

    def create(
        self, req: wire.CreateContainer, *, registry_auth: wire.RegistryAuth | None = None
    ) -> wire.ContainerInfo:
        """Create (and start, if asked); the same request again answers the
        existing container (idempotent by name). ``registry_auth`` is the
        credential for this pull only (paas.hosts.pull_auth)."""
        # The first create of an image pulls it (the stack layer is large).
        body = _create_body(req)
        if registry_auth is not None:
            body["registry_auth"] = {
                k: v for k, v in asdict(registry_auth).items() if v is not None
            }
        return container_info(
            self._json("POST", "/v1/containers", body, timeout_s=CREATE_TIMEOUT_S)
        )

    def list(self) -> list[wire.ContainerInfo]:
        data = self._json("GET", "/v1/containers")
        return [container_info(c) for c in data.get("containers", [])]

    def inspect(self, name: str) -> wire.ContainerInfo:
        return container_info(self._json("GET", f"/v1/containers/{self._name(name)}"))

    def start(self, name: str) -> wire.ContainerInfo:
        return container_info(self._json("POST", f"/v1/containers/{self._name(name)}/start"))

    def stop(self, name: str, *, timeout_s: float = 10.0) -> wire.ContainerInfo:
        path = f"/v1/containers/{self._name(name)}/stop"
        return container_info(
            self._json("POST", path, {"timeout_s": timeout_s}, timeout_s=timeout_s + 30)
        )

    def restart(self, name: str, *, timeout_s: float = 10.0) -> wire.ContainerInfo:
        path = f"/v1/containers/{self._name(name)}/restart"
        return container_info(
            self._json("POST", path, {"timeout_s": timeout_s}, timeout_s=timeout_s + 30)
        )

    def kill(self, name: str, *, signal: str = "KILL") -> wire.ContainerInfo:
        path = f"/v1/containers/{self._name(name)}/kill"
        return container_info(self._json("POST", path, {"signal": signal}))

    def remove(self, name: str, *, force: bool = True) -> bool:
        """Remove; True if it existed. Removing a missing one is not an error."""
        path = f"/v1/containers/{self._name(name)}?force={int(force)}"
        try:
            return bool(self._json("DELETE", path).get("removed"))
        except ContainerMissing:
            return False

    def all_stats(self) -> dict[str, wire.Stats]:
        """Every container's CPU and memory counters, by name, in one request."""
        out = {}
        for item in self._json("GET", "/v1/stats").get("containers", []):
            limit = item.get("memory_limit_bytes")
            out[str(item["name"])] = wire.Stats(
                cpu_usage_ns=int(item.get("cpu_usage_ns") or 0),
                memory_bytes=int(item.get("memory_bytes") or 0),
                memory_limit_bytes=None if limit is None else int(limit),
                pids=int(item.get("pids") or 0),
            )
        return out

    def logs(self, name: str, *, tail: int = 20) -> builtins.list[wire.LogLine]:
        path = f"/v1/containers/{self._name(name)}/logs?tail={int(tail)}"
        _, raw = self._request("GET", path)
        out = []
        for line in raw.decode(errors="replace").splitlines():
            item = json.loads(line) if line.strip() else {}
            if "line" in item:
                out.append(wire.LogLine(item["time"], item["stream"], item["line"]))
        return out
