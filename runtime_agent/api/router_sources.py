"""``/v1/router-sources``: who this host's route ports answer, read and
replaced while the agent runs (runtime_agent/router_sources.py)::

    GET /v1/router-sources  -> {"router_sources", "in_effect", "overridden_by"}
    PUT /v1/router-sources  {"router_sources": ["10.0.0.7", "10.0.1.0/24"]}
                            -> the same, once the file is written and the
                               nft set refilled; 400 for anything but a list
                               of at most 64 IPv4 addresses or networks

``overridden_by`` names PAAS_AGENT_ROUTER_SOURCES when it is set on the
host: the pushed list is kept in the file, the setting's stays in effect,
and ``message`` says so.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from runtime_agent import router_sources
from runtime_agent.api.server import json_response, read_json
from runtime_agent.host.errors import InvalidRequest

PATH = "/v1/router-sources"
SHAPE = 'the body is {"router_sources": ["10.0.0.7", "10.0.1.0/24", ...]}'


def routes(keeper: router_sources.RouterSourcesKeeper) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.Response:
        return json_response(keeper.state().as_dict())

    async def replace(request: web.Request) -> web.Response:
        body = await read_json(request, required=True)
        if not isinstance(body, dict) or set(body) != {"router_sources"}:
            raise InvalidRequest(SHAPE, field="router_sources")
        sources = router_sources.parse(body["router_sources"])
        outcome = await asyncio.to_thread(keeper.replace, sources)
        return json_response(outcome.as_dict())

    return [web.get(PATH, show), web.put(PATH, replace)]
