"""`paas deploy`: pack the directory, upload it with a progress bar, follow
the build log, then the rollout, and end with the app's URL. Exits non-zero
when the build or the release fails."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paas_cli import archive
from paas_cli.client import Api
from paas_cli.errors import CliError
from paas_cli.output import Output, human_bytes, progress_bar

POLL_S = 0.5
BUILD_ENDED = {"succeeded", "failed", "cancelled"}
RELEASE_ENDED = {"current", "failed", "retired"}


def deploy(api: Api, out: Output, app: str, directory: Path, timeout_s: float) -> int:
    with tempfile.TemporaryDirectory(prefix="paas-deploy-") as tmp:
        packed = archive.pack(directory, Path(tmp) / f"{app}.tar.gz")
        out.note(f"Packing {directory}: {packed.files} files, {human_bytes(packed.bytes)}")
        build = api.upload(f"apps/{app}/builds", "source", packed.path, _bar(out))
    out.note("")
    deadline = time.monotonic() + timeout_s
    build = _follow_build(api, out, build, deadline)
    if build["state"] != "succeeded":
        raise CliError(f"Build #{build['number']} {build['state']}: {build.get('error') or ''}")
    release = _wait_release(api, out, app, build, deadline)
    url = _url(api, app)
    if not out.data({"build": build, "release": release, "url": url}):
        out.say(f"Released {release['label']}: {url}" if url else f"Released {release['label']}")
    return 0


def _bar(out: Output) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rUploading {progress_bar(done, total)}", end="", file=sys.stderr)
        elif done >= total:
            out.note(f"Uploaded {human_bytes(total)}")

    return show


def _follow_build(api: Api, out: Output, build: dict[str, Any], deadline: float) -> dict[str, Any]:
    seq = 0
    while True:
        build = api.get(f"builds/{build['id']}", since=seq)
        for line in build.get("log", []):
            out.note(line["text"])
            seq = max(seq, int(line["seq"]))
        if build["state"] in BUILD_ENDED and not build.get("log"):
            return build
        if time.monotonic() > deadline:
            raise CliError(f"Gave up following build #{build['number']}: it is {build['state']}.")
        if build["state"] not in BUILD_ENDED:
            time.sleep(POLL_S)


def _wait_release(
    api: Api, out: Output, app: str, build: dict[str, Any], deadline: float
) -> dict[str, Any]:
    out.note("-----> Rolling out")
    while True:
        release = _release_of(api, app, build["digest"])
        if release and release["state"] in RELEASE_ENDED:
            if release["state"] != "current":
                why = release.get("error") or release["state"]
                raise CliError(f"Release {release['label']} failed: {why}")
            return release
        if time.monotonic() > deadline:
            raise CliError("Gave up waiting for the release to go live; see `paas releases`.")
        time.sleep(POLL_S)


def _release_of(api: Api, app: str, digest: str) -> dict[str, Any] | None:
    for release in api.get(f"apps/{app}/releases").get("releases", []):
        if digest and str(release.get("image", "")).endswith(digest):
            return release
    return None


def _url(api: Api, app: str) -> str:
    try:
        return str(api.get(f"apps/{app}").get("url", ""))
    except CliError:
        return ""
