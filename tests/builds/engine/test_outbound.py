"""What build steps get from the host: its CA bundle (read-only, named by
every variable pip, npm, curl and Python's ssl read), its proxies, and no
password of an index or proxy URL in any log line."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.config import HostTrust
from paas.builds.engine.outbound import CA_BUNDLE_MOUNT
from paas.builds.engine.redact import RedactingLog, mask_url_credentials, url_secrets

PROXY_PASSWORD = "pr0xy-Pa55"
INDEX_PASSWORD = "ind3x-s3cret"

DOCKERFILE = """\
FROM stack
RUN sha256sum "$SSL_CERT_FILE" \
    && env | sort | grep -i -E '^(ssl|pip|requests|curl|node|npm|git|https?_|no_)' \
    && test -r /run/paas/ca-certificates.crt && ! touch /run/paas/ca-certificates.crt 2>/dev/null \
    && echo "wrote=$(touch /made-by-step && echo yes)"
CMD ["true"]
"""


def build(config, source, lines, **kwargs):
    return build_image(
        source_dir=source, app=f"trust-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
        config=config, log=lines.append, **kwargs,
    )  # fmt: skip


@pytest.mark.root
def test_a_step_sees_the_host_ca_bundle_and_proxies(engine_config, tmp_path, image_store):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot really one\n-----END CERTIFICATE-----\n")
    trust = HostTrust(
        ca_bundle=bundle,
        http_proxy=f"http://builder:{PROXY_PASSWORD}@proxy.invalid:3128",
        https_proxy=f"http://builder:{PROXY_PASSWORD}@proxy.invalid:3129",
        no_proxy="localhost,.internal",
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(DOCKERFILE)
    lines: list[str] = []
    result = build(replace(engine_config, trust=trust), src, lines)
    log = "\n".join(lines)

    assert hashlib.sha256(bundle.read_bytes()).hexdigest() in log
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                 "CURL_CA_BUNDLE", "npm_config_cafile"):  # fmt: skip
        assert f"{name}={CA_BUNDLE_MOUNT}" in log, name
    assert "HTTP_PROXY=http://builder:***@proxy.invalid:3128" in log
    assert "https_proxy=http://builder:***@proxy.invalid:3129" in log
    assert "NO_PROXY=localhost,.internal" in log
    assert PROXY_PASSWORD not in log
    assert "wrote=yes" in log
    # Nothing of it is in the image: not the mount point, not the variables.
    image = image_store.pull(result.digest_ref)
    assert not any("PROXY" in e or "CERT" in e for e in image.config["config"]["Env"])
    top = image_store.lower_dirs(image)[0]
    assert (top / "made-by-step").exists()
    assert not (top / "run" / "paas").exists()


@pytest.mark.root
def test_an_index_password_never_reaches_the_log(engine_config, sample, package_index):
    index = package_index.url.replace("http://", f"http://builder:{INDEX_PASSWORD}@")
    src = sample("python-deps")
    (src / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\ntinydep==1.0\n")  # pip runs
    (src / "Procfile").write_text("web: python3 main.py\n")
    lines: list[str] = []
    result = build(replace(engine_config, pip_index_url=index), src, lines)
    assert result.steps[0].cached is False
    log = "\n".join(lines)
    assert "tinydep" in log
    assert INDEX_PASSWORD not in log
    assert INDEX_PASSWORD not in json.dumps([s.__dict__ for s in result.steps])


@pytest.mark.root
def test_an_npm_registry_password_never_reaches_the_log(engine_config, sample):
    """PAAS_NPM_REGISTRY_URL with credentials: npm gets it, and its own
    scripts printing it (as npm's config and errors do) show it masked."""
    registry = f"http://builder:{INDEX_PASSWORD}@npm-registry.invalid:4873/"
    src = sample("node-nodeps")
    package = json.loads((src / "package.json").read_text())
    # The root package's preinstall runs in the install step (never cached:
    # a fresh nonce), and prints the registry npm was given two ways.
    package["scripts"]["preinstall"] = (
        f"echo {uuid.uuid4().hex} && echo registry=$npm_config_registry && npm config get registry"
    )
    (src / "package.json").write_text(json.dumps(package))
    # A lockfile (with no packages) makes the install step run npm ci.
    root = {"name": package["name"], "version": package["version"]}
    lock = {"name": root["name"], "lockfileVersion": 3, "requires": True, "packages": {"": root}}
    (src / "package-lock.json").write_text(json.dumps({**lock, "version": root["version"]}))
    lines: list[str] = []
    result = build(replace(engine_config, npm_registry_url=registry), src, lines)
    log = "\n".join(lines)
    assert result.steps[0].name == "install dependencies (npm ci)"
    assert result.steps[0].cached is False
    assert "registry=http://builder:***@npm-registry.invalid:4873/" in log
    assert INDEX_PASSWORD not in log
    assert INDEX_PASSWORD not in json.dumps([s.__dict__ for s in result.steps])


@pytest.mark.root
def test_a_url_password_a_step_prints_is_masked(engine_config, tmp_path):
    # The password is put together at run time: only the masking of URL
    # credentials in step output can hide it.
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(
        'FROM stack\nRUN p=ind3x; echo "index https://builder:${p}-s3cret@pypi.invalid/simple/"\n'
        'CMD ["true"]\n'
    )
    lines: list[str] = []
    build(engine_config, src, lines)
    log = "\n".join(lines)
    assert "index https://builder:***@pypi.invalid/simple/" in log
    assert INDEX_PASSWORD not in log


def test_url_credentials_are_masked_wherever_they_appear():
    text = "Looking in indexes: https://me:p%40ss@index.example/simple and npm://a:b@c"
    assert mask_url_credentials(text) == (
        "Looking in indexes: https://me:***@index.example/simple and npm://a:***@c"
    )
    assert url_secrets("https://me:p%40ss@index.example/") == ["p%40ss", "p@ss"]
    assert url_secrets("https://index.example/") == []


def test_a_secret_is_masked_plain_url_encoded_and_base64_at_any_offset():
    import base64
    from urllib.parse import quote

    secret = "s3cr3t/v@lue+42"
    out: list[str] = []
    log = RedactingLog(out.append, [secret])
    log(f"plain {secret}")
    log(f"url {quote(secret, safe='')}")
    for prefix in (b"", b"x", b"xy", b"TOKEN="):
        log("b64 " + base64.b64encode(prefix + secret.encode() + b"\n").decode())
        log("b64url " + base64.urlsafe_b64encode(prefix + secret.encode()).decode())
    text = "\n".join(out)
    assert secret not in text
    assert quote(secret, safe="") not in text
    assert base64.b64encode(secret.encode()).decode()[:12] not in text
    assert text.count("***") == len(out)


def test_a_long_secret_base64_wrapped_over_lines_is_masked_on_every_line():
    import base64
    import textwrap

    secret = "ghp_" + "k3yMaterial" * 9  # 103 characters: its base64 spans two lines
    # Every 12 characters of its encoding, at any alignment: none may remain.
    grams = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret.encode()).decode()
        grams |= {encoded[i : i + 12] for i in range(4, len(encoded) - 15)}
    for prefix in (b"", b"token=", b"Authorization: Bearer "):
        out: list[str] = []
        log = RedactingLog(out.append, [secret])
        encoded = base64.b64encode(prefix + secret.encode() + b"\n").decode()
        lines = textwrap.wrap(encoded, 76)  # as coreutils' base64 prints it
        assert len(lines) >= 2
        for line in lines:
            log.step(line)
        for line in out:
            for piece in line.strip().split("***"):
                assert not any(piece[i : i + 12] in grams for i in range(len(piece))), out


def test_a_bundle_gone_from_the_host_fails_the_build_saying_how_to_fix_it(tmp_path):
    from paas.builds.engine.errors import BuildFailed
    from paas.builds.engine.outbound import trust_mounts

    missing = tmp_path / "gone.pem"
    with pytest.raises(BuildFailed, match=f"{missing} does not exist.*'none' to mount none"):
        trust_mounts(HostTrust(ca_bundle=missing))
