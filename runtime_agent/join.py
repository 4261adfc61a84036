"""Join this host's agent to a control plane with a one-time join token.

    python -m runtime_agent.join --control-plane https://paas.example.com \\
        --join-token join_... --name host-2 --agent-url https://10.0.0.2:7070

It sends the fingerprint of the certificate the agent serves (made now if the
agent has none yet, see ``runtime_agent/api/tls.py``): the control plane pins
it and talks to no agent at that address with another certificate. Joining
again with a re-join token (``manage.py host_join_token --rejoin NAME``)
replaces the pin after the certificate changed.

The control plane answers with the agent's own credential, written to
``$PAAS_AGENT_ROOT/token`` (mode 0600), and with the addresses its router
and health check connect from, written to ``$PAAS_AGENT_ROOT/router_sources``:
the only sources this host's route ports answer (unless
``PAAS_AGENT_ROUTER_SOURCES`` says otherwise; see runtime_agent/net/ports.py).
Start (or restart) the agent after. Later changes need no join: the control
plane pushes them to the running agent (runtime_agent/router_sources.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent import router_sources
from runtime_agent.api.tls import certificate_fingerprint, certificate_paths
from runtime_agent.config import PREFIX, ConfigError, tls_settings
from runtime_agent.host.errors import InvalidRequest
from runtime_agent.host.settings import Settings


def join(
    control_plane: str, join_token: str, name: str, agent_url: str, fingerprint: str
) -> dict[str, Any]:
    body = json.dumps(
        {"join_token": join_token, "name": name, "agent_url": agent_url,
         "tls_fingerprint": fingerprint}
    ).encode()  # fmt: skip
    req = urllib.request.Request(
        control_plane.rstrip("/") + "/api/v1/hosts/join",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise SystemExit(f"the control plane refused the join: {message}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime_agent.join")
    parser.add_argument("--control-plane", required=True)
    parser.add_argument("--join-token", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--agent-url", required=True)
    args = parser.parse_args(argv)
    try:
        root, cert, key = tls_settings(Settings(os.environ, PREFIX))
        fingerprint = certificate_fingerprint(certificate_paths(root, cert, key)[0])
    except ConfigError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    answer = join(args.control_plane, args.join_token, args.name, args.agent_url, fingerprint)
    sources = _router_sources(answer)
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "token", str(answer["credential"]))
    if sources is not None:  # an older control plane says nothing: keep what is there
        router_sources.write(root, sources)
    listed = ", ".join(map(str, sources or ())) or "no one"
    print(f"joined as {args.name} (certificate {fingerprint}); credential written to "
          f"{root / 'token'}; route ports answer {listed}",
          file=sys.stderr)  # fmt: skip


def _router_sources(answer: dict[str, Any]) -> tuple[IPv4Network, ...] | None:
    """The control plane's list, checked as the agent's API checks a push."""
    sources = answer.get("router_sources")
    if sources is None:
        return None
    try:
        return router_sources.parse(sources)
    except InvalidRequest as exc:
        raise SystemExit(f"error: the control plane's {exc.message}") from None


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
