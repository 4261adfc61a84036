"""Tiny TCP servers inside network namespaces a test made, for probing who
reaches whom. Each answers every connection with "<token> <peer address>"
and closes; they are stopped by PID."""

from __future__ import annotations

import select
import subprocess
import sys

SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{sys.argv[3]} {peer[0]}\\n".encode())
    c.close()
"""


class NamespaceServers:
    """Servers started inside namespaces, stopped by PID at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, ns: str, address: str, port: int, token: str) -> None:
        argv = ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, address, str(port), token]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 10)
        assert readable and proc.stdout.readline() == "ready\n", f"server in {ns} did not start"

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()
