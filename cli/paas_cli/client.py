"""The platform's REST API (/api/v1) over urllib, with the bearer token.

Every refusal becomes a CliError carrying the platform's own message
(``{"error": code, "message": ...}``, or ``{"error": {"code", "message"}}``).
"""

from __future__ import annotations

import http.client
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Callable

from paas_cli import __version__
from paas_cli.errors import CliError, StreamDropped

TIMEOUT_S = 60.0
CHUNK = 64 * 1024


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict | None = None,
        timeout: float = TIMEOUT_S,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self._send(method, self._url(path, query), data, headers, timeout)

    def upload(
        self, path: str, field: str, archive: Path, progress: Callable[[int, int], None]
    ) -> Any:
        """A multipart POST of one file, streamed from disk with progress."""
        body = _Multipart(field, archive, progress)
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
        return self._send("POST", self._url(path, None), body, headers, timeout=600.0)

    def open_stream(
        self, path: str, query: dict, headers: dict, timeout: float
    ) -> http.client.HTTPResponse:
        """A GET whose body is read as it comes (server-sent events). A
        refusal is a CliError; not reaching the platform is a StreamDropped
        (the caller tries again)."""
        headers = {**headers, **self._headers("text/event-stream")}
        req = urllib.request.Request(self._url(path, query), headers=headers, method="GET")
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except urllib.error.URLError as exc:
            raise StreamDropped(f"cannot reach {self.url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise StreamDropped(f"talking to {self.url} failed: {exc}") from None
        return response

    def _headers(self, accept: str) -> dict:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": accept,
            "User-Agent": f"paas-cli/{__version__}",
        }

    def _url(self, path: str, query: dict | None) -> str:
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        pairs = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        return f"{url}?{urllib.parse.urlencode(pairs)}" if pairs else url

    def _send(self, method: str, url: str, data: Any, headers: dict, timeout: float) -> Any:
        headers = {**headers, **self._headers("application/json")}
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except urllib.error.URLError as exc:
            raise CliError(f"Cannot reach {self.url}: {exc.reason}") from None
        except OSError as exc:  # timeouts, resets
            raise CliError(f"Talking to {self.url} failed: {exc}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CliError(f"{url} did not answer JSON; is {self.url} the platform?") from None


def _refusal(exc: urllib.error.HTTPError) -> CliError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    message = body.get("message", "") if isinstance(body, dict) else ""
    if isinstance(error, dict):
        message = error.get("message", "")
    if exc.code == 401:
        message = f"{message or 'Not authenticated.'} Run `paas login` again."
    return CliError(message or f"The platform answered {exc.code} {exc.reason}.")


class _Multipart:
    """A file-like request body: the part's header, the file, the trailer."""

    def __init__(self, field: str, path: Path, progress: Callable[[int, int], None]) -> None:
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{path.name}"\r\nContent-Type: application/gzip\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.size = path.stat().st_size
        self.length = len(head) + self.size + len(tail)
        self._parts: list[bytes | BinaryIO] = [head, path.open("rb"), tail]
        self._sent = 0
        self._progress = progress

    def read(self, size: int = CHUNK) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                self._parts.pop(0)
                return part
            chunk = part.read(size)
            if chunk:
                self._sent += len(chunk)
                self._progress(self._sent, self.size)
                return chunk
            part.close()
            self._parts.pop(0)
        return b""

    def __len__(self) -> int:
        return self.length
