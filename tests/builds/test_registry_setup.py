"""``manage.py setup_registry``'s work (registry_server.prepare): the real
registry started from its config takes the worker's own tokens and nothing
else, and the agent's env file holds no credential."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.builds.registry_server import RegistrySetup, prepare
from paas.builds.registry_tokens import TokenSigner, parse_scopes, pull_access
from runtime_agent.host.errors import RegistryError
from runtime_agent.images.registry import RegistryClient
from tests.support.private import exposed
from tests.support.processes import free_port, start_process, stop_process, wait_until


@contextlib.contextmanager
def serving(setup: RegistrySetup, log: Path) -> Iterator[None]:
    with open(log, "ab") as out:
        proc = start_process(
            ["docker-registry", "serve", setup.config_file],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        wait_until(lambda: _challenge(setup) is not None, timeout_s=30, what="the registry")
        yield
    finally:
        stop_process(proc)


def _challenge(setup: RegistrySetup) -> str | None:
    ctx = ssl.create_default_context(cafile=setup.ca_file)
    try:
        urllib.request.urlopen(f"https://{setup.host}/v2/", timeout=2, context=ctx)
    except urllib.error.HTTPError as exc:
        return str(exc.headers.get("WWW-Authenticate", ""))
    except OSError:
        return None
    return ""


def _worker_client(setup: RegistrySetup) -> RegistryClient:
    signer = TokenSigner(Path(setup.token_key), Path(setup.token_cert))
    return RegistryClient(
        setup.host,
        ca_file=setup.ca_file,
        token_source=lambda scope: signer.mint(parse_scopes(scope), subject="t", ttl_s=60),
    )


def test_the_registry_takes_the_workers_tokens_and_agents_get_no_credential(tmp_path: Path):
    directory = tmp_path / "registry"
    setup = prepare(directory, port=free_port(), realm="https://panel.example/registry/token")
    env = (directory / "agent.env").read_text()
    assert "PASSWORD" not in env and "REGISTRY_USER" not in env
    assert "PAAS_AGENT_REGISTRY_CA=" in env
    assert (Path(setup.token_key).stat().st_mode & 0o077) == 0  # root's alone
    # Config, TLS key, token key, password: nothing another local user may
    # read (root's, the rest 0640 for the service user's group).
    assert exposed(directory) == []
    with serving(setup, tmp_path / "registry.log"):
        challenge = _challenge(setup) or ""
        assert 'Bearer realm="https://panel.example/registry/token"' in challenge
        blob = tmp_path / "blob"
        blob.write_bytes(b"layer bytes")
        with _worker_client(setup) as worker:
            digest = worker.push_blob("my-app", blob)
            assert worker.has_blob("my-app", digest)
        signer = TokenSigner(Path(setup.token_key), Path(setup.token_cert))
        other = signer.mint(pull_access("other-app"), subject="agent", ttl_s=60)
        agent = RegistryClient(setup.host, token=other, ca_file=setup.ca_file)
        with agent, pytest.raises(RegistryError, match="refused"):
            agent.has_blob("my-app", digest)
        # The password of an older setup opens nothing any more.
        with (
            RegistryClient(
                setup.host, username="paas", password=setup.password, ca_file=setup.ca_file
            ) as basic,
            pytest.raises(RegistryError),
        ):
            basic.has_blob("my-app", digest)


def test_an_older_htpasswd_setup_is_moved_to_token_auth(tmp_path: Path):
    directory = tmp_path / "registry"
    first = prepare(directory, port=free_port())
    state = json.loads((directory / "setup.json").read_text())
    for key in ("token_key", "token_cert"):
        state.pop(key)
    (directory / "setup.json").write_text(json.dumps(state))
    Path(first.config_file).write_text("version: 0.1\nauth:\n  htpasswd: {}\n")

    again = prepare(directory)
    assert (again.host, again.ca_file) == (first.host, first.ca_file)  # clients keep working
    assert again.token_key and Path(again.token_key).exists()
    config = Path(again.config_file).read_text()
    assert "token:" in config and "htpasswd:" not in config
    with serving(again, tmp_path / "registry.log"), _worker_client(again) as worker:
        assert worker.list_tags("nothing-yet") == []
