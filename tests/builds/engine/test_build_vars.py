"""Build arguments reach ARG, build secrets are files under /run/secrets in
RUN steps: readable there, in no layer of the image (checked in the pushed
blobs themselves) and in no log line, not even base64- or URL-encoded."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import uuid
from dataclasses import replace
from urllib.parse import quote

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.errors import BuildFailed

SECRET = "tok-3xampl3+S3cr3t/value"
LONG_SECRET = "ghp_" + "L0ngT0kenMaterial" * 6  # its base64 wraps over two lines

DOCKERFILE = """\
FROM stack
ARG GREETING=unset
RUN echo "greeting=$GREETING" > /greeting.txt && cat /greeting.txt
RUN sha256sum /run/secrets/api_token && cat /run/secrets/api_token && echo \
    && base64 /run/secrets/api_token && (printf 'Bearer '; cat /run/secrets/api_token) | base64 \
    && python3 -c 'import sys, urllib.parse as u; print(u.quote(open(sys.argv[1]).read(), ""))' \
       /run/secrets/api_token \
    && base64 /run/secrets/long_token \
    && echo "token in env: ${API_TOKEN:-none}" && ls -l /run/secrets
CMD ["true"]
"""


def layer_blobs(config, result, tmp_path) -> list[bytes]:
    """Every layer of the pushed image, as the registry serves it (gunzipped)."""
    repo = result.image_ref.split("/", 1)[1].rsplit(":", 1)[0]
    out = []
    with config.registry.client() as client:
        manifest = json.loads(client.get_manifest(repo, result.digest)[0])
        for i, layer in enumerate(manifest["layers"][1:]):  # above the stack
            dest = tmp_path / f"layer-{i}"
            client.fetch_blob(repo, layer["digest"], dest)
            out.append(gzip.decompress(dest.read_bytes()))
    return out


@pytest.mark.root
def test_an_arg_reaches_the_step_and_a_secret_is_a_file_in_no_layer_and_no_log(
    engine_config, tmp_path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(DOCKERFILE)
    config = replace(engine_config, build_args={"GREETING": "hello-arg"})
    lines: list[str] = []
    result = build_image(
        source_dir=src, app=f"vars-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
        config=config, log=lines.append,
        secrets={"api_token": SECRET, "long_token": LONG_SECRET},
    )  # fmt: skip
    log = "\n".join(lines)
    assert "greeting=hello-arg" in log
    # Read in RUN: its digest was printed (the value itself is masked).
    assert hashlib.sha256(SECRET.encode()).hexdigest() in log
    assert "token in env: none" in log
    for form in (
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"Bearer " + SECRET.encode()).decode()[12:28],
        quote(SECRET, safe=""),
    ):
        assert form not in log, form
    assert "***" in log
    wrapped = base64.b64encode(LONG_SECRET.encode()).decode()
    assert len(wrapped) > 76
    for i in range(0, len(wrapped) - 12):
        assert wrapped[i : i + 12] not in log
    layers = layer_blobs(config, result, tmp_path)
    assert any(b"greeting=hello-arg" in blob for blob in layers)
    for blob in layers:
        assert SECRET.encode() not in blob
        assert base64.b64encode(SECRET.encode()) not in blob
        assert b"run/secrets" not in blob


@pytest.mark.root
def test_secrets_are_not_in_the_reuse_key_but_args_are(engine_config, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text('FROM stack\nARG V=1\nRUN echo "v=$V" > /v\nCMD ["true"]\n')
    app = f"vars-{uuid.uuid4().hex[:6]}"

    def build(version: int, args: dict[str, str], secrets: dict[str, str]):
        return build_image(
            source_dir=src, app=app, build_id=f"b{version}", version=version,
            config=replace(engine_config, build_args=args), log=lambda line: None,
            secrets=secrets,
        )  # fmt: skip

    first = build(1, {"V": "1"}, {"s": "first-secret"})
    assert build(2, {"V": "1"}, {"s": "second-secret"}).reused
    assert not build(3, {"V": "2"}, {"s": "first-secret"}).reused
    assert first.digest


def test_a_secret_name_that_is_not_a_file_name_fails_the_build(engine_config, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text('FROM stack\nRUN true\nCMD ["true"]\n')
    with pytest.raises(BuildFailed, match="not a plain file name"):
        build_image(
            source_dir=src, app=f"vars-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
            config=engine_config, log=lambda line: None, secrets={"../etc/passwd": "x"},
        )  # fmt: skip
