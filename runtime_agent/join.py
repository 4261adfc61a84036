"""Join this host's agent to a control plane with a one-time join token.

    python -m runtime_agent.join --control-plane https://paas.example.com \\
        --join-token join_... --name host-2 --agent-url http://10.0.0.2:7070

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
from pathlib import Path


def join(control_plane: str, join_token: str, name: str, agent_url: str) -> str:
    body = json.dumps({"join_token": join_token, "name": name, "agent_url": agent_url}).encode()
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
    root = Path(os.environ.get("PAAS_AGENT_ROOT", "/var/lib/paas-agent"))
    credential = join(args.control_plane, args.join_token, args.name, args.agent_url)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(credential + "\n")
    print(f"joined as {args.name}; credential written to {root / 'token'}", file=sys.stderr)


if __name__ == "__main__":
    main()
