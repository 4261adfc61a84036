"""Small archives made in memory for upload tests.

Both are deterministic: the same files give the same bytes at any time (the
gzip header and zip entries otherwise carry the current time, so two calls a
second apart differ)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, _ZIP_EPOCH), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


HELLO = {"app.py": b"print('hello')\n", "requirements.txt": b"", "static/x.css": b"body{}"}
