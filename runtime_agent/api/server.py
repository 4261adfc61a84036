"""The agent's HTTP API: ``/v1``, JSON, one bearer token.

The handlers only translate HTTP into calls on the container manager (and
the image store) and their results back into JSON; every decision lives in
the manager. Errors travel as :class:`HostError` and leave as
``{"error", "message", "permanent", ...}`` with the error's status.

Routes (every one needs ``Authorization: Bearer <token>``)::

    GET    /v1/info                         host capacity and usage, agent pid/uptime
    GET    /v1/containers                   {"containers": [ContainerInfo...]}
    POST   /v1/containers                   wire.CreateContainer -> ContainerInfo;
                                            201 new, 200 same request again, 409 other request
    GET    /v1/containers/{name}            ContainerInfo
    DELETE /v1/containers/{name}?force=1    {"name", "removed": true|false} (idempotent)
    POST   /v1/containers/{name}/start      -> ContainerInfo
    POST   /v1/containers/{name}/stop       timeout_s (query or JSON) -> ContainerInfo
    POST   /v1/containers/{name}/restart    timeout_s -> ContainerInfo
    POST   /v1/containers/{name}/kill       signal (9, "KILL", "SIGKILL") -> ContainerInfo
    GET    /v1/containers/{name}/logs       tail=N|all, since=RFC3339|unix, follow=1
                                            NDJSON of wire.LogLine {"time","stream","line"}
    GET    /v1/containers/{name}/stats      wire.Stats + name
    GET    /v1/stats                        {"containers": [wire.Stats + name...]}: every
                                            container's, in one request (metrics collection)
    POST   /v1/containers/{name}/exec       wire.ExecRequest -> NDJSON
                                            {"stream":"stdout"|"stderr","data"}..., {"exit_code"}
    POST   /v1/images/pull                  {"ref"} -> {"ref","digest","layers"}
    POST   /v1/images/gc                    -> {"removed": [layer digests], "in_use": [...]}
    GET    /v1/router-sources               who route ports answer (api/router_sources.py;
    PUT    /v1/router-sources               the daemon adds these two routes)

A stream that fails after its 200 went out ends with an ``{"error": ...}``
line. Middleware order matters: the error middleware is outermost so that every
failure, auth included, answers JSON; auth runs next, before any handler
reads a body, so an anonymous client cannot make the agent read or parse
a body at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import signal
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from runtime_agent import wire
from runtime_agent.api.errors import Forbidden, Unauthorized, http_status
from runtime_agent.config import AgentConfig
from runtime_agent.host.errors import HostError, InvalidRequest, NotFound

log = logging.getLogger("runtime_agent.api")

NDJSON = "application/x-ndjson"
# How long a streaming handler waits for the first item before committing to
# a 200: long enough for "no such container" or "not running" to come back
# as a proper status, short enough that a quiet `logs -f` starts promptly.
FIRST_ITEM_WAIT_S = 0.5
# How often an idle stream checks whether its client left or the agent is
# draining (aiohttp does not cancel handlers on disconnect, on purpose: a
# half-done create must not be cancelled because a client gave up).
STREAM_POLL_S = 0.5
MAX_TIMEOUT_S = 3600.0
# Most log lines a stream holds for its client before the reader waits (and
# the most a follow stream takes from its tailer for one write): the
# reader encodes them without yielding, so this also bounds how long one
# chatty container's stream holds the event loop (5000 was 25-300 ms; 1000
# held a flood to ~16k lines/s on a starved loop).
LOG_CHUNK_LINES = 2000


@runtime_checkable
class LineBatches(Protocol):
    """A log follow the agent's tailer fills (containers.logs.LogFollow)."""

    async def chunk(self, most: int, timeout: float | None = None) -> bytes | None: ...
    def close(self) -> None: ...


class Manager(Protocol):
    """What the API needs from :class:`containers.ContainerManager`.

    Return types are loose on purpose: a read may be a plain or an async
    method, and :func:`_resolve` accepts both.
    """

    def create(self, req: wire.CreateContainer, auth: wire.RegistryAuth | None = None) -> Any: ...
    def start_container(self, name: str) -> Any: ...
    def stop(self, name: str, timeout_s: float) -> Any: ...
    def restart(self, name: str, timeout_s: float) -> Any: ...
    def kill(self, name: str, signal: int) -> Any: ...
    def remove(self, name: str, force: bool) -> Any: ...
    def list(self) -> Any: ...
    def inspect(self, name: str) -> Any: ...
    def exec(self, name: str, req: wire.ExecRequest) -> Any: ...
    def logs(self, name: str, tail: int | None, since: datetime | None, follow: bool) -> Any: ...
    def stats(self, name: str) -> Any: ...
    def host_info(self) -> Any: ...


class Images(Protocol):
    """What the API needs from :class:`images.ImageStore` (blocking methods)."""

    def pull(self, ref: str, *, auth: wire.RegistryAuth | None = None) -> Any: ...
    def gc(self, in_use_digests: set[str]) -> Any: ...


# --- JSON in and out -----------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, datetimes and bytes as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    body = json.dumps(to_jsonable(data), separators=(",", ":")) + "\n"
    return web.Response(text=body, status=status, content_type="application/json", **kwargs)


async def read_json(request: web.Request, *, required: bool) -> Any:
    """The body as JSON; ``{}`` when it is empty and optional."""
    raw = await request.read()  # bounded by the app's client_max_size
    if not raw.strip():
        if required:
            raise InvalidRequest("a JSON object body is required", field="")
        return {}
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from the bytes.
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 text", field="") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="",
        ) from None


async def read_options(request: web.Request) -> dict[str, Any]:
    """Options from the query string and/or a JSON object body (the body wins)."""
    options: dict[str, Any] = dict(request.query)
    body = await read_json(request, required=False)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", field="")
    options.update(body)
    return options


def opt_float(options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidRequest(f"{key} must be a number of seconds", field=key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{key} must be a number of seconds", field=key) from None
    if not 0 <= number <= MAX_TIMEOUT_S:
        raise InvalidRequest(f"{key} must be between 0 and {MAX_TIMEOUT_S:g}", field=key)
    return number


def opt_bool(options: dict[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise InvalidRequest(f"{key} must be 1/0 or true/false", field=key)


def opt_signal(options: dict[str, Any], key: str = "signal") -> signal.Signals:
    """``9``, ``"9"``, ``"KILL"`` or ``"SIGKILL"``; SIGKILL by default like docker kill."""
    value = options.get(key, "SIGKILL")
    text = str(value).strip().upper()
    try:
        if isinstance(value, int) and not isinstance(value, bool) or text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise InvalidRequest(f"{key}: {value!r} is not a signal", field=key) from None


def opt_tail(options: dict[str, Any]) -> int | None:
    value = options.get("tail")
    if value is None or value == "" or value == "all":
        return None
    text = str(value)
    if isinstance(value, bool) or not text.isdigit():
        raise InvalidRequest("tail must be a number of lines or 'all'", field="tail")
    return int(text)


def opt_since(options: dict[str, Any]) -> datetime | None:
    """RFC 3339 time or Unix seconds; naive times are taken as UTC."""
    value = options.get("since")
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        text = str(value).strip()
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest(
            "since must be an RFC 3339 time or Unix seconds", field="since"
        ) from None


def container_name(request: web.Request) -> str:
    name = request.match_info["name"]
    # A name the manager would refuse to create cannot exist: 404 without
    # handing an odd string any further.
    if not wire.NAME_RE.fullmatch(name):
        raise NotFound(f"no container named {name!r}", name=name)
    return name


async def _resolve(value: Any) -> Any:
    """Await ``value`` if it is awaitable (the manager may be sync or async)."""
    if isinstance(value, Awaitable):
        return await value
    return value


# --- middleware -------------------------------------------------------------------


def _error_body(exc: web.HTTPException) -> dict[str, Any]:
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        413: "body_too_large",
    }
    return {
        "error": codes.get(exc.status, "http_error"),
        "message": exc.reason if exc.status != 413 else exc.text or exc.reason,
        "permanent": exc.status < 500,
    }


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except HostError as exc:
        status = http_status(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc.message)
        headers = {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="paas-agent"'
        return json_response(exc.as_dict(), status=status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return json_response(_error_body(exc), status=exc.status, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s %s: unexpected error", request.method, request.path)
        body = {
            "error": "internal_error",
            "message": f"internal error ({type(exc).__name__}); see the agent's log",
            "permanent": False,
        }
        return json_response(body, status=500)


def auth_middleware(token: str, max_body_bytes: int) -> Any:
    expected = token.encode()

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.strip().partition(" ")
        if not header:
            raise Unauthorized("an Authorization: Bearer <token> header is required")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        # Constant time, on bytes: a non-ASCII header must not raise TypeError.
        if not hmac.compare_digest(presented.strip().encode(), expected):
            raise Forbidden("the token is not valid for this agent")
        # Refuse an announced oversized body before anything reads it;
        # client_max_size still guards chunked bodies while they are read.
        if request.content_length is not None and request.content_length > max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=max_body_bytes, actual_size=request.content_length
            )
        return await handler(request)

    return check


# --- handlers ---------------------------------------------------------------------


class Handlers:
    def __init__(self, manager: Manager, images: Images | None, config: AgentConfig) -> None:
        self.manager = manager
        self.images = images
        self.config = config
        self.started = time.time()
        self.stopping = asyncio.Event()
        # Weak values: a name's lock lives only while a create holds or awaits it.
        self._create_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def info(self, request: web.Request) -> web.Response:
        host = to_jsonable(await _resolve(self.manager.host_info()))
        containers = await _resolve(self.manager.list())
        by_state: dict[str, int] = {}
        for c in containers:
            by_state[str(c.state)] = by_state.get(str(c.state), 0) + 1
        agent = {
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(self.started, UTC).isoformat(),
            "uptime_s": round(time.time() - self.started, 3),
        }
        data: dict[str, Any] = {"containers": len(containers)}
        data.update(host if isinstance(host, dict) else {"host": host})
        data.update(
            {"api_version": wire.API_VERSION, "agent": agent, "containers_by_state": by_state}
        )
        return json_response(data)

    async def list_containers(self, request: web.Request) -> web.Response:
        containers = await _resolve(self.manager.list())
        return json_response({"containers": containers})

    async def create(self, request: web.Request) -> web.Response:
        body = await read_json(request, required=True)
        req = wire.parse_create(body)
        # The pull's credential travels beside the request, not in it: it is
        # not compared by the idempotent create and never stored.
        auth = wire.parse_registry_auth(body.get("registry_auth"))
        # One create per name at a time here too, so that of two racing
        # identical requests exactly one is told 201 (the manager already
        # guarantees that only one container comes out of them).
        lock = self._create_locks.get(req.name)
        if lock is None:
            lock = self._create_locks[req.name] = asyncio.Lock()
        async with lock:
            existed = await self._exists(req.name)
            info = await _resolve(self.manager.create(req, auth))
        # 200 for a retried create that found its container, 201 for a new one.
        return json_response(
            info, status=200 if existed else 201, headers={"Location": f"/v1/containers/{req.name}"}
        )

    async def _exists(self, name: str) -> bool:
        try:
            await _resolve(self.manager.inspect(name))
        except NotFound:
            return False
        return True

    async def inspect(self, request: web.Request) -> web.Response:
        return json_response(await _resolve(self.manager.inspect(container_name(request))))

    async def start(self, request: web.Request) -> web.Response:
        name = container_name(request)
        await read_options(request)  # a malformed body is still a 400
        await _resolve(self.manager.start_container(name))
        return json_response(await _resolve(self.manager.inspect(name)))

    async def stop(self, request: web.Request) -> web.Response:
        name = container_name(request)
        timeout = opt_float(await read_options(request), "timeout_s", self.config.stop_grace_s)
        await _resolve(self.manager.stop(name, timeout))
        return json_response(await _resolve(self.manager.inspect(name)))

    async def restart(self, request: web.Request) -> web.Response:
        name = container_name(request)
        timeout = opt_float(await read_options(request), "timeout_s", self.config.stop_grace_s)
        await _resolve(self.manager.restart(name, timeout))
        return json_response(await _resolve(self.manager.inspect(name)))

    async def kill(self, request: web.Request) -> web.Response:
        name = container_name(request)
        sig = opt_signal(await read_options(request))
        await _resolve(self.manager.kill(name, sig))
        return json_response(await _resolve(self.manager.inspect(name)))

    async def remove(self, request: web.Request) -> web.Response:
        """Idempotent: removing what is already gone answers 200 with ``removed: false``."""
        name = container_name(request)
        force = opt_bool(await read_options(request), "force")
        if not await self._exists(name):
            return json_response({"name": name, "removed": False})
        try:
            await _resolve(self.manager.remove(name, force))
        except NotFound:  # a concurrent remove won the race; same outcome
            return json_response({"name": name, "removed": False})
        return json_response({"name": name, "removed": True})

    async def stats(self, request: web.Request) -> web.Response:
        name = container_name(request)
        stats = to_jsonable(await _resolve(self.manager.stats(name)))
        return json_response({"name": name, **stats})

    async def all_stats(self, request: web.Request) -> web.Response:
        out = []
        for info in await _resolve(self.manager.list()):
            with contextlib.suppress(NotFound):  # removed since the list: nothing to report
                stats = to_jsonable(await _resolve(self.manager.stats(info.name)))
                out.append({"name": info.name, **stats})
        return json_response({"containers": out})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        name = container_name(request)
        options = dict(request.query)
        tail, since, follow = opt_tail(options), opt_since(options), opt_bool(options, "follow")
        await _resolve(self.manager.inspect(name))  # 404 before any stream starts
        lines = await _resolve(self.manager.logs(name, tail, since, follow))
        if isinstance(lines, LineBatches):
            return await self._stream_batches(request, lines)
        return await self._stream(request, _log_chunks(lines))

    async def _stream_batches(self, request: web.Request, lines: LineBatches) -> web.StreamResponse:
        """A follow stream written by the handler itself, straight from what the
        tailer stored: the line's only hops in the agent are the tailer's task
        and this one (a reader task and a task per chunk cost a pass of the
        event loop each, 100-270 ms apiece while a flood keeps it busy)."""
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        try:
            await response.prepare(request)
            while (chunk := await lines.chunk(LOG_CHUNK_LINES, STREAM_POLL_S)) is not None:
                if not chunk:
                    if self._should_leave(request):
                        break
                    continue
                try:
                    await response.write(chunk)
                except ConnectionError:  # the client left; nothing more to say
                    break
        finally:
            lines.close()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def exec(self, request: web.Request) -> web.StreamResponse:
        name = container_name(request)
        req = wire.parse_exec(await read_json(request, required=True))
        await _resolve(self.manager.inspect(name))
        output = await _resolve(self.manager.exec(name, req))
        return await self._stream(request, _exec_items(output))

    async def pull_image(self, request: web.Request) -> web.Response:
        body = await read_json(request, required=True)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", field="")
        ref = body.get("ref", body.get("image"))
        if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
            raise InvalidRequest(
                "ref must be an image reference like registry/name:tag", field="ref"
            )
        auth = wire.parse_registry_auth(body.get("registry_auth"))
        image = await asyncio.to_thread(self._images().pull, ref, auth=auth)
        return json_response(
            {
                "ref": ref,
                "digest": getattr(image, "digest", None),
                "layers": getattr(image, "layer_digests", []),
            }
        )

    async def gc_images(self, request: web.Request) -> web.Response:
        await read_options(request)
        containers = await _resolve(self.manager.list())
        in_use = {c.image_digest for c in containers if c.image_digest}
        removed = await asyncio.to_thread(self._images().gc, in_use)
        return json_response({"removed": removed, "in_use": sorted(in_use)})

    def _images(self) -> Images:
        if self.images is None:
            raise HostError("this agent has no image store configured")
        return self.images

    async def _stream(self, request: web.Request, items: AsyncIterator[Any]) -> web.StreamResponse:
        """NDJSON, one object per line, flushed as it comes.

        Errors raised before the first item (or within FIRST_ITEM_WAIT_S)
        still get their own status; later ones become a last ``{"error"}``
        line, since the 200 is already on the wire.
        """
        first = asyncio.ensure_future(_next(items))
        pending: asyncio.Task[Any] | None = first
        try:
            await asyncio.wait({first}, timeout=FIRST_ITEM_WAIT_S)
            if first.done():
                first.result()  # raises the manager's error: a proper status
            response = web.StreamResponse(headers={"Content-Type": NDJSON})
            await response.prepare(request)
            while pending is not None:
                await asyncio.wait({pending}, timeout=STREAM_POLL_S)
                if not pending.done():
                    if self._should_leave(request):
                        break
                    continue
                item = await self._item_or_error(pending)
                if item is _END:
                    break
                try:
                    await response.write(item if isinstance(item, bytes) else _line(item))
                except ConnectionError:  # the client left; nothing more to say
                    break
                failed = isinstance(item, dict) and "error" in item
                pending = None if failed else asyncio.ensure_future(_next(items))
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await items.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    def _should_leave(self, request: web.Request) -> bool:
        transport = request.transport
        return self.stopping.is_set() or transport is None or transport.is_closing()

    @staticmethod
    async def _item_or_error(task: asyncio.Task[Any]) -> Any:
        try:
            return task.result()
        except HostError as exc:
            return exc.as_dict()
        except Exception as exc:
            log.exception("stream failed")
            return {"error": "internal_error", "message": f"{type(exc).__name__}: {exc}"}


_END: Any = object()


async def _next(items: AsyncIterator[Any]) -> Any:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return _END


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(to_jsonable(item), separators=(",", ":")) + "\n").encode()


def _log_line(line: Any) -> bytes:
    if isinstance(line, wire.LogLine):  # the common case, without the generic walk
        data: dict[str, Any] = {"time": line.time, "stream": line.stream, "line": line.line}
        if line.n:
            data["n"] = line.n
        return (json.dumps(data, separators=(",", ":")) + "\n").encode()
    return _line(to_jsonable(line))


async def _log_chunks(lines: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Log lines as NDJSON chunks: each chunk is every line that came since the last.

    Why: one write (and one scheduling round) per line held a follower to a
    few thousand lines a second. A reader task takes lines as fast as they
    come into a buffer (at most LOG_CHUNK_LINES, then it waits for the
    writer, so a slow client makes the tailer end its stream as before
    rather than the buffer grow), and each chunk is what piled up meanwhile.
    """
    buf: list[bytes] = []
    ready, room = asyncio.Event(), asyncio.Event()
    failure: list[BaseException] = []
    finished = False

    async def read() -> None:
        nonlocal finished
        try:
            async for line in lines:
                buf.append(_log_line(line))
                ready.set()
                if len(buf) >= LOG_CHUNK_LINES:
                    room.clear()
                    await room.wait()
        except Exception as exc:  # handed to the writer, which reports it as the last line
            failure.append(exc)
        finally:
            finished = True
            ready.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            if not buf and not finished:
                await ready.wait()
                ready.clear()
            if buf:
                chunk = b"".join(buf)
                buf.clear()
                room.set()
                yield chunk
            elif finished:
                if failure:
                    raise failure[0]
                return
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await lines.aclose()  # type: ignore[attr-defined]


async def _exec_items(output: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    """The manager yields ``(stream, bytes)`` pairs, then the exit code."""
    try:
        async for item in output:
            if isinstance(item, int) and not isinstance(item, bool):
                yield {"exit_code": item}
            elif isinstance(item, tuple) and item and item[0] in ("exit", "exit_code"):
                yield {"exit_code": item[1]}
            elif isinstance(item, tuple) and len(item) == 2:
                stream, data = item
                text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                yield {"stream": stream, "data": text}
            else:
                yield to_jsonable(item)
    finally:
        with contextlib.suppress(Exception):
            await output.aclose()  # type: ignore[attr-defined]


# --- the application -----------------------------------------------------------------


def create_app(manager: Manager, images: Images | None, config: AgentConfig) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(config.token, config.max_body_bytes)],
        client_max_size=config.max_body_bytes,
    )
    h = Handlers(manager, images, config)

    async def on_shutdown(app: web.Application) -> None:
        h.stopping.set()  # open streams end at their next poll instead of at the deadline

    app.on_shutdown.append(on_shutdown)
    c = "/v1/containers/{name}"
    app.add_routes(
        [
            web.get("/v1/info", h.info),
            web.get("/v1/containers", h.list_containers),
            web.post("/v1/containers", h.create),
            web.get(c, h.inspect),
            web.delete(c, h.remove),
            web.post(c + "/start", h.start),
            web.post(c + "/stop", h.stop),
            web.post(c + "/restart", h.restart),
            web.post(c + "/kill", h.kill),
            web.get(c + "/logs", h.logs),
            web.get(c + "/stats", h.stats),
            web.get("/v1/stats", h.all_stats),
            web.post(c + "/exec", h.exec),
            web.post("/v1/images/pull", h.pull_image),
            web.post("/v1/images/gc", h.gc_images),
        ]
    )
    return app


class ApiServer:
    """The app on a TCP socket, over TLS only (plain HTTP gets no answer: a
    bearer token must never cross a shared network in clear), with a drain
    on stop: the listening socket closes first, requests in flight get
    ``drain_timeout_s`` to finish."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        drain_timeout_s: float,
        *,
        tls: ssl.SSLContext,
    ) -> None:
        self.runner = web.AppRunner(
            app,
            # aiohttp takes a deadline <= 0 as "no deadline"; a drain must end.
            shutdown_timeout=max(drain_timeout_s, 0.001),
            access_log=logging.getLogger("runtime_agent.access"),
            access_log_format='%a "%r" %s %b %Tfs',
        )
        self.host, self.port = host, port
        self.tls = tls

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        # The port actually bound (the configured one may be 0 in tests).
        address = self.runner.addresses[0]
        self.port = address[1]
        log.info("API listening on https://%s:%d/v1", self.host, self.port)

    async def stop(self) -> None:
        log.info("API draining (up to the drain timeout)")
        await self.runner.cleanup()
        log.info("API stopped")
