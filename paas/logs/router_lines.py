"""The router's access log (JSON lines written by nginx, see paas/router) as
app log lines, in the manner of Heroku's ``heroku[router]`` lines::

    method=GET path="/cart?id=3" host=shop.example.com status=200 bytes=512
    service=12ms request_id=0f3a... fwd="203.0.113.9"

Every field is shaped by whoever sent the request: values are quoted and
control characters escaped, and a line that does not parse is skipped.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from paas.logs.lines import IngestLine
from paas.logs.models import LogSource

MAX_FIELD = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f\"\\]")


def _quote(value: Any) -> str:
    text = str(value)[:MAX_FIELD]
    return '"' + _CONTROL.sub(lambda m: json.dumps(m.group())[1:-1], text) + '"'


def _token(value: Any) -> str:
    """A value shown bare (method, status): anything odd is quoted instead."""
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z0-9_.:/-]{1,100}", text) else _quote(text)


def _moment(data: dict[str, Any]) -> datetime:
    msec = data.get("msec")
    if isinstance(msec, int | float) and not isinstance(msec, bool):
        return datetime.fromtimestamp(float(msec), UTC)
    moment = datetime.fromisoformat(str(data["time"]))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _millis(value: Any) -> str:
    try:
        return f"{round(float(value) * 1000)}ms"
    except (TypeError, ValueError):
        return "-"


def router_line(raw: bytes) -> tuple[str, IngestLine] | None:
    """(app name, line) for one access log line, or None if it is not one."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("app"), str) or not data["app"]:
            return None
        text = " ".join(
            [
                f"method={_token(data.get('method', '-'))}",
                f"path={_quote(data.get('path', ''))}",
                f"host={_token(data.get('host', '-'))}",
                f"status={_token(data.get('status', '-'))}",
                f"bytes={_token(data.get('bytes', '-'))}",
                f"service={_millis(data.get('request_time'))}",
                f"request_id={_token(data.get('request_id') or '-')}",
                f"fwd={_quote(data.get('forwarded_for') or data.get('remote_addr') or '')}",
            ]
        )
        return data["app"], IngestLine(
            source=LogSource.ROUTER, timestamp=_moment(data), text=text,
            process_type="router", instance="router",
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None
