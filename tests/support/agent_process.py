"""Run a ContainerManager in a separate process, as the real agent runs, so a
test can stop "the agent" for good and start another one: containers it
started are then not children of the next agent.

    python -m tests.support.agent_process CONFIG_JSON create REQUEST_JSON
    python -m tests.support.agent_process CONFIG_JSON watch NAME SECONDS

``create`` creates and starts, prints the ContainerInfo as JSON and exits
(leaving the container running). ``watch`` adopts, prints the info, waits up
to SECONDS for NAME to leave "running", prints the info again and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState
from tests.support.agent import LocalImages


def _emit(info: wire.ContainerInfo) -> None:
    print(json.dumps(info.to_json()), flush=True)


async def main(raw: dict[str, Any], action: str, arg: str, extra: list[str]) -> None:
    config = AgentConfig(
        root=Path(raw["root"]),
        token=raw["token"],
        bridge=raw["bridge"],
        subnet=IPv4Network(raw["subnet"]),
        nft_table=raw["nft_table"],
        backoff_base_s=raw["backoff_base_s"],
        backoff_cap_s=raw["backoff_cap_s"],
    )
    images = LocalImages(Path("/nonexistent"), layer=Path(raw["layer"]), digest=raw["digest"])
    network = HostNetwork(config.net_dir, config.bridge, config.subnet, config.nft_table)
    manager = ContainerManager(
        config, images, network, Runc(config.runc_root), tick_s=0.05, log_poll_s=0.02
    )
    await manager.start()
    try:
        if action == "create":
            _emit(await manager.create(wire.parse_create(json.loads(arg))))
            return
        _emit(manager.inspect(arg))
        deadline = time.monotonic() + float(extra[0])
        while time.monotonic() < deadline:
            if manager.inspect(arg).state != ContainerState.RUNNING:
                break
            await asyncio.sleep(0.05)
        _emit(manager.inspect(arg))
    finally:
        await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]))
