"""Join this host's agent to a control plane with a one-time join token.

    python -m runtime_agent.join --control-plane https://paas.example.com \\
        --join-token join_... --name host-2 --agent-url https://10.0.0.2:7070

It sends the fingerprint of the certificate the agent serves (made now if the
agent has none yet, see ``runtime_agent/api/tls.py``): the control plane pins
it and talks to no agent at that address with another certificate. Joining
again with a re-join token (``manage.py host_join_token --rejoin NAME``)
replaces the pin after the certificate changed.

The control plane answers with the agent's own credential, written to
``$PAAS_AGENT_ROOT/token`` (mode 0600): start (or restart) the agent after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from runtime_agent.api.tls import certificate_fingerprint, certificate_paths
from runtime_agent.config import PREFIX, ConfigError, tls_settings
from runtime_agent.host.settings import Settings


def join(control_plane: str, join_token: str, name: str, agent_url: str, fingerprint: str) -> str:
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
            return str(json.loads(resp.read())["credential"])
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
    credential = join(args.control_plane, args.join_token, args.name, args.agent_url, fingerprint)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(credential + "\n")
    print(f"joined as {args.name} (certificate {fingerprint}); credential written to "
          f"{root / 'token'}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
