"""The build log sink: every line a build writes goes through here, so secret
values are masked in one place and nowhere else has to remember to.

What is masked, in every line:

- each secret as given, and the forms a step is likely to print it in:
  URL-encoded (``quote``/``quote_plus``) and base64 (standard and URL-safe
  alphabets). Base64 of a secret inside longer data depends on where the
  secret starts modulo 3, so the characters that only the secret decides are
  masked for each of the three alignments, also when ``base64`` wraps it
  over several lines;
- the password of any URL with credentials (``https://user:pw@index/``),
  whether or not it was declared a secret: pip and npm index URLs and proxy
  URLs carry them, and a step may echo its environment.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# Very short values would mask ordinary words ("1", "on"); they are not
# secrets anybody could recognise in a log anyway.
MIN_SECRET_LEN = 3
# The shortest encoded fragment worth masking: shorter ones match by chance.
MIN_FRAGMENT_LEN = 6
# The shortest piece of a line-wrapped base64 secret that is masked (9
# bytes of the secret; shorter pieces of random-looking text match by chance).
MIN_WRAP_LEN = 12
_URL_PASSWORD_RE = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


def mask_url_credentials(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``."""
    return _URL_PASSWORD_RE.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def url_secrets(url: str | None) -> list[str]:
    """The password of a URL with credentials, as written and decoded."""
    if not url:
        return []
    match = _URL_PASSWORD_RE.search(url)
    if not match:
        return []
    raw = match.group(0)[len(match.group("head")) : -1]
    return [raw, unquote(raw)]


def _base64_fragments(secret: bytes) -> set[str]:
    """The base64 characters decided by ``secret`` alone, at each of the
    three byte alignments it can start at inside longer data."""
    out = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + secret).decode().rstrip("=")
            first = -(-offset * 8 // 6)  # the first char with no padding-byte bits
            last = (offset + len(secret)) * 8 // 6  # chars wholly inside the secret
            fragment = encoded[first:last]
            if len(fragment) >= MIN_FRAGMENT_LEN:
                out.add(fragment)
    return out


def secret_forms(secret: str) -> set[str]:
    """``secret`` and its encoded forms a log might show."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms |= _base64_fragments(secret.encode())
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def _mask_wrapped(text: str, fragment: str) -> str:
    """``base64`` wraps its output (76 columns): a long secret's encoding
    then ends one line and starts the next, or fills whole lines. Mask the
    part of ``fragment`` at the end or start of ``text``, or all of a line
    that lies inside it."""
    body = text.strip()
    if len(body) >= MIN_WRAP_LEN and body in fragment:
        return text[: len(text) - len(text.lstrip())] + MASK
    # (The quick membership tests keep ordinary lines cheap.)
    if body[-MIN_WRAP_LEN:] in fragment:
        for k in range(min(len(fragment), len(body)) - 1, MIN_WRAP_LEN - 1, -1):
            if body.endswith(fragment[:k]):
                text = text.rstrip()[:-k] + MASK
                break
    body = text.lstrip()
    if body[:MIN_WRAP_LEN] in fragment:
        indent = text[: len(text) - len(body)]
        for k in range(min(len(fragment), len(body)) - 1, MIN_WRAP_LEN - 1, -1):
            if body.startswith(fragment[-k:]):
                return indent + MASK + body[k:]
    return text


class RedactingLog:
    def __init__(self, sink: Callable[[str], None], secrets: Iterable[str] = ()) -> None:
        self._sink = sink
        forms: set[str] = set()
        wrappable: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LEN:
                forms |= secret_forms(secret)
                wrappable |= {
                    f for f in _base64_fragments(secret.encode()) if len(f) > MIN_WRAP_LEN
                }
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)
        self._wrappable = sorted(wrappable)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for fragment in self._wrappable:
            text = _mask_wrapped(text, fragment)
        return mask_url_credentials(text)

    def __call__(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._sink(self.redact(line))

    def step(self, line: str) -> None:
        """A line of a step's own output, indented under the step's header."""
        self(f"       {line}")
