"""Turning Routes into one nginx.conf (a pure function: no files, no nginx).

Every value from a Route was validated when the Route was made; here each is
also written as a quoted nginx string by :func:`quote`, which refuses what
could end the string or start a variable, so even a validation bug could not
inject a directive. Pages (404 for unknown hosts, 503 for an app without
instances, 502/504 when its instances fail) are ``return`` bodies inside the
config: nginx's workers then need no file access at all, and request and
response bodies are streamed, never buffered to temp files, for the same
reason (the worker user may not be able to enter the data directory).
"""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from paas.router.config import RouterConfig
from paas.router.errors import InvalidRoute
from paas.router.routes import Route

# One line of JSON per request; the logs code turns these into router lines.
ACCESS_LOG_FORMAT = (
    '{"time":"$time_iso8601","msec":$msec,"router":"$hostname","app":"$paas_app",'
    '"host":"$host","method":"$request_method","path":"$request_uri",'
    '"protocol":"$server_protocol","scheme":"$scheme","status":$status,'
    '"bytes":$body_bytes_sent,"request_time":$request_time,"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","connect_time":"$upstream_connect_time",'
    '"service_time":"$upstream_response_time","request_id":"$request_id",'
    '"remote_addr":"$remote_addr","forwarded_for":"$http_x_forwarded_for",'
    '"error":"$paas_error"}'
)
UPSTREAM_KEEPALIVE = 32
WORKER_SHUTDOWN_TIMEOUT_S = 300


def quote(value: str, *, multiline: bool = False) -> str:
    """``value`` as a double-quoted nginx string."""
    for ch in value:
        if ch == "$" or (ord(ch) < 0x20 and not (multiline and ch == "\n")) or ord(ch) == 0x7F:
            raise InvalidRoute(f"Refused to write {value[:80]!r} into the router's config.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cert_paths(generation_dir: Path, fingerprint: str) -> tuple[Path, Path]:
    certs = generation_dir / "certs"
    return certs / f"{fingerprint}.crt", certs / f"{fingerprint}.key"


def _page(title: str, text: str) -> str:
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;color:#222}"
        "h1{font-size:1.4em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>\n"
    )


UNKNOWN_HOST_PAGE = _page(
    "No app at this address",
    "Nothing is deployed at this host name. Check the address, or add this "
    "domain to an app on the platform.",
)


def _no_instance_page(app: str) -> str:
    return _page(
        f"{app} is not running",
        f"The app {app} has no running web instance right now. Its owner can "
        "deploy it or scale its web process up.",
    )


def _unavailable_page(app: str) -> str:
    return _page(
        f"{app} is not answering",
        f"The instances of {app} did not answer in time or refused the "
        "connection. Try again in a moment; if it lasts, look at the app's logs.",
    )


def _listen(config: RouterConfig, port: int, options: str) -> list[str]:
    lines = []
    for address in config.listen:
        ip = ipaddress.ip_address(address)
        host = f"[{ip.compressed}]" if ip.version == 6 else str(ip)
        lines.append(f"listen {host}:{port}{options};")
    return lines


def _block(head: str, body: Sequence[str], indent: str = "    ") -> list[str]:
    return [f"{head} {{", *(indent + line for line in body), "}"]


def _main(config: RouterConfig, generation: int) -> list[str]:
    workers = str(config.workers) if config.workers else "auto"
    return [
        f"# Generation {generation}, written by paas.router: the next apply replaces it.",
        "daemon off;",
        "master_process on;",
        "user nobody nogroup;",
        f"worker_processes {workers};",
        "worker_rlimit_nofile 16384;",
        f"worker_shutdown_timeout {WORKER_SHUTDOWN_TIMEOUT_S}s;",
        f"pid {quote(str(config.pid_file))};",
        f"error_log {quote(str(config.error_log))} warn;",
        "events { worker_connections 4096; }",
    ]


def _http_settings(config: RouterConfig, names: int) -> list[str]:
    return [
        "server_tokens off;",
        # Sized for the longest DNS name (253) and for every route's names:
        # with nginx's defaults one long custom domain, or a few thousand
        # names, would make every later config fail its test.
        "server_names_hash_bucket_size 512;",
        f"server_names_hash_max_size {max(1024, 4 * names)};",
        "uninitialized_variable_warn off;",
        "default_type text/plain;",
        f"log_format paas_router escape=json '{ACCESS_LOG_FORMAT}';",
        # Buffered: one write per 64 KiB or 200 ms instead of one per request.
        f"access_log {quote(str(config.access_log))} paas_router buffer=64k flush=200ms;",
        "sendfile on;",
        "tcp_nodelay on;",
        "keepalive_timeout 65s;",
        f"client_max_body_size {config.max_body_mb}m;",
        # Streamed both ways: no temp files (see the module docstring).
        "proxy_request_buffering off;",
        "proxy_max_temp_file_size 0;",
        "proxy_http_version 1.1;",
        # Host goes through unchanged (its port included), so no
        # X-Forwarded-Host/-Port: each header the router adds is parsed by
        # every app on every request (bench/router.py measures that cost).
        "proxy_set_header Host $host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $paas_connection;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Request-Id $request_id;",
        "proxy_connect_timeout 5s;",
        f"proxy_read_timeout {config.read_timeout}s;",
        f"proxy_send_timeout {config.read_timeout}s;",
        # WebSockets get "Connection: upgrade"; every other request an empty
        # one, so upstream connections stay open for reuse (keepalive).
        *_block("map $http_upgrade $paas_connection", ['default "upgrade";', '"" "";']),
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_cache shared:paas_tls:10m;",
        "ssl_session_timeout 1h;",
    ]


def _status_server(config: RouterConfig, generation: int) -> list[str]:
    body = [
        f"listen {quote('unix:' + str(config.status_socket))};",
        "access_log off;",
        f'location = /generation {{ return 200 "{generation}\\n"; }}',
        "location / { return 404; }",
    ]
    return _block("server", body)


def _default_servers(config: RouterConfig) -> list[str]:
    http = [
        *_listen(config, config.http_port, " default_server"),
        'set $paas_app "";',
        'set $paas_error "unknown_host";',
        'default_type "text/html; charset=utf-8";',
        f"location / {{ return 404 {quote(UNKNOWN_HOST_PAGE, multiline=True)}; }}",
    ]
    # An unknown name over TLS: refuse the handshake rather than show some
    # other domain's certificate. A request whose Host differs from the name
    # its handshake was for lands here too: 421 Misdirected Request.
    https = [
        *_listen(config, config.https_port, " ssl http2 default_server"),
        "ssl_reject_handshake on;",
        'set $paas_app "";',
        'set $paas_error "misdirected";',
        "return 421;",
    ]
    return _block("server", http) + _block("server", https)


def _upstream(name: str, route: Route, zone_size_kb: int | None) -> list[str]:
    zone = f"zone paas_upstreams {zone_size_kb}k;" if zone_size_kb else "zone paas_upstreams;"
    servers = [f"server {u.netloc};" for u in route.upstreams]
    body = [
        zone,
        *servers,
        f"keepalive {UPSTREAM_KEEPALIVE};",
        "keepalive_requests 10000;",
        "keepalive_timeout 60s;",
    ]
    return _block(f"upstream {name}", body)


def _app_locations(route: Route, upstream: str | None) -> list[str]:
    app = route.app
    head = [
        f"server_name {' '.join(quote(h) for h in route.hostnames)};",
        f"set $paas_app {quote(app)};",
        'set $paas_error "";',
    ]
    if upstream is None:
        page = quote(_no_instance_page(app), multiline=True)
        return [
            *head,
            'set $paas_error "no_instance";',
            'default_type "text/html; charset=utf-8";',
            f"location / {{ return 503 {page}; }}",
        ]
    unavailable = quote(_unavailable_page(app), multiline=True)
    return [
        *head,
        f"location / {{ proxy_pass http://{upstream}; }}",
        "error_page 502 @paas_502;",
        "error_page 504 @paas_504;",
        *_block(
            "location @paas_502",
            [
                'set $paas_error "upstream_failed";',
                'default_type "text/html; charset=utf-8";',
                f"return 502 {unavailable};",
            ],
        ),
        *_block(
            "location @paas_504",
            [
                'set $paas_error "upstream_timeout";',
                'default_type "text/html; charset=utf-8";',
                f"return 504 {unavailable};",
            ],
        ),
    ]


def _redirect_port(config: RouterConfig) -> str:
    return "" if config.https_port == 443 else f":{config.https_port}"


def _route_servers(
    config: RouterConfig, route: Route, upstream: str | None, generation_dir: Path
) -> list[str]:
    locations = _app_locations(route, upstream)
    if route.tls is None:
        return _block("server", [*_listen(config, config.http_port, ""), *locations])
    crt, key = cert_paths(generation_dir, route.tls.fingerprint)
    redirect = [
        *_listen(config, config.http_port, ""),
        f"server_name {' '.join(quote(h) for h in route.hostnames)};",
        f"set $paas_app {quote(route.app)};",
        'set $paas_error "https_redirect";',
        # $host here is one of this server's validated names.
        f"location / {{ return 308 https://$host{_redirect_port(config)}$request_uri; }}",
    ]
    tls = [
        *_listen(config, config.https_port, " ssl http2"),
        f"ssl_certificate {quote(str(crt))};",
        f"ssl_certificate_key {quote(str(key))};",
        *locations,
    ]
    return _block("server", redirect) + _block("server", tls)


def render_config(
    *, config: RouterConfig, routes: Sequence[Route], generation: int, generation_dir: Path
) -> str:
    """The whole nginx.conf for ``routes`` as generation ``generation``."""
    http: list[str] = _http_settings(config, sum(len(r.hostnames) for r in routes))
    servers_total = sum(len(r.upstreams) for r in routes)
    zone_size_kb: int | None = 256 + 2 * servers_total
    for index, route in enumerate(routes):
        upstream = None
        if route.upstreams:
            upstream = f"paas_r{index}"
            http += _upstream(upstream, route, zone_size_kb)
            zone_size_kb = None  # sized once, shared by every group
    http += _status_server(config, generation)
    http += _default_servers(config)
    for index, route in enumerate(routes):
        name = f"paas_r{index}" if route.upstreams else None
        http += _route_servers(config, route, name, generation_dir)
    lines = _main(config, generation) + _block("http", http)
    return "\n".join(lines) + "\n"
