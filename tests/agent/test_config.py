"""AgentConfig from the environment: defaults, typed values, loud failures.
(The rules every variable follows are tested with the helper, in
tests/agent/test_settings.py.)"""

from __future__ import annotations

import stat
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runtime_agent.config import AgentConfig, ConfigError

TOKEN = "alice-token-0123456789abcdef"


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    base = {"PAAS_AGENT_ROOT": str(tmp_path), "PAAS_AGENT_TOKEN": TOKEN}
    base.update({f"PAAS_AGENT_{k}": v for k, v in values.items()})
    return base


def test_it_has_sensible_defaults(tmp_path):
    config = AgentConfig.from_env(env(tmp_path))
    assert config.root == tmp_path
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 7070)
    assert config.subnet == IPv4Network("10.88.0.0/16")
    assert config.redis_url is None
    assert config.registry_credentials("127.0.0.1:5000") is None
    assert (config.backoff_base_s, config.backoff_cap_s, config.backoff_reset_s) == (1, 300, 600)
    assert config.containers_dir == tmp_path / "containers"
    assert config.runc_root == tmp_path / "runc"
    assert config.log_backlog_bytes == 64 * 1024 * 1024


def test_it_reads_every_typed_value(tmp_path):
    config = AgentConfig.from_env(
        env(
            tmp_path,
            LISTEN="[::1]:8123",
            BRIDGE="paast1",
            SUBNET="10.77.3.0/24",
            NFT_TABLE="paas_t1",
            BACKOFF_BASE_S="0.5",
            BACKOFF_CAP_S="4",
            LOG_MAX_BYTES="65536",
            LOG_MAX_FILES="3",
            LOG_BACKLOG_BYTES="1048576",
            STOP_GRACE_S="2.5",
            REGISTRY="registry.example:5000",
            REGISTRY_USER="bob",
            REGISTRY_PASSWORD="hunter2",
        )
    )
    assert (config.listen_host, config.listen_port) == ("::1", 8123)
    assert config.bridge == "paast1"
    assert config.subnet == IPv4Network("10.77.3.0/24")
    assert config.nft_table == "paas_t1"
    assert (config.backoff_base_s, config.backoff_cap_s) == (0.5, 4.0)
    assert (config.log_max_bytes, config.log_max_files) == (65536, 3)
    assert config.log_backlog_bytes == 1048576
    assert config.stop_grace_s == 2.5
    assert config.registry_credentials("registry.example:5000") == ("bob", "hunter2")


def test_it_sends_registry_credentials_only_to_its_registry(tmp_path):
    config = AgentConfig.from_env(
        env(tmp_path, REGISTRY="10.0.0.5:5000", REGISTRY_USER="bob", REGISTRY_PASSWORD="pw")
    )
    assert config.registry_credentials("10.0.0.5:5000") == ("bob", "pw")
    for elsewhere in ("attacker.example", "10.0.0.5:5001", "10.0.0.5", "evil.10.0.0.5:5000"):
        assert config.registry_credentials(elsewhere) is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LISTEN", "7070", "PAAS_AGENT_LISTEN"),
        ("LISTEN", "127.0.0.1:99999", "PAAS_AGENT_LISTEN"),
        ("SUBNET", "10.88.0.1/16", "PAAS_AGENT_SUBNET"),
        ("SUBNET", "10.88.0.0/30", "PAAS_AGENT_SUBNET"),
        ("SUBNET", "fd00::/64", "PAAS_AGENT_SUBNET"),
        ("BRIDGE", "a-bridge-name-too-long", "PAAS_AGENT_BRIDGE"),
        ("BRIDGE", "0bridge", "PAAS_AGENT_BRIDGE"),
        ("BRIDGE", "brü", "PAAS_AGENT_BRIDGE"),
        ("NFT_TABLE", "bad table", "PAAS_AGENT_NFT_TABLE"),
        ("NFT_TABLE", "tablé", "PAAS_AGENT_NFT_TABLE"),
        ("LOG_MAX_FILES", "three", "PAAS_AGENT_LOG_MAX_FILES"),
        ("LOG_MAX_FILES", "0", "PAAS_AGENT_LOG_MAX_FILES"),
        ("LOG_BACKLOG_BYTES", "64k", "PAAS_AGENT_LOG_BACKLOG_BYTES"),
        ("LOG_BACKLOG_BYTES", "4096", "PAAS_AGENT_LOG_BACKLOG_BYTES"),
        ("STOP_GRACE_S", "soon", "PAAS_AGENT_STOP_GRACE_S"),
        ("STOP_GRACE_S", "nan", "PAAS_AGENT_STOP_GRACE_S"),
        ("BACKOFF_CAP_S", "0.1", "PAAS_AGENT_BACKOFF_CAP_S"),
        ("DRAIN_TIMEOUT_S", "0", "PAAS_AGENT_DRAIN_TIMEOUT_S"),
        ("ROOT", "relative/dir", "PAAS_AGENT_ROOT"),
        ("REGISTRY_USER", "bob", "PAAS_AGENT_REGISTRY_PASSWORD"),
        ("REGISTRY", "host/path", "PAAS_AGENT_REGISTRY"),
        ("USERNS_MIN_ID", "100000", "PAAS_AGENT_USERNS_MIN_ID"),
        ("USERNS_DEFAULT_ID", "65536", "PAAS_AGENT_USERNS_DEFAULT_ID"),
        ("ALLOWED_NETWORKS", "10.0.0.1/8", "PAAS_AGENT_ALLOWED_NETWORKS"),
        ("ROUTER_PORTS", "80,http", "PAAS_AGENT_ROUTER_PORTS"),
        ("ROUTER_SOURCES", "10.0.0.5/24", "PAAS_AGENT_ROUTER_SOURCES"),
        ("ROUTER_SOURCES", "10.0.0.5,router", "PAAS_AGENT_ROUTER_SOURCES"),
        ("ROUTER_SOURCES", "fd00::1", "PAAS_AGENT_ROUTER_SOURCES"),
        ("DEFAULT_WRITABLE_BYTES", "1000", "PAAS_AGENT_DEFAULT_WRITABLE_BYTES"),
        ("REGISTRY_CA", "/nonexistent/ca.pem", "PAAS_AGENT_REGISTRY_CA"),
    ],
)
def test_it_refuses_a_bad_value_naming_the_variable(tmp_path, name, value, says):
    values = env(tmp_path, **{name: value})
    with pytest.raises(ConfigError) as exc:
        AgentConfig.from_env(values)
    assert says in str(exc.value)


def test_it_reads_secrets_from_files(tmp_path):
    (tmp_path / "token.txt").write_text(TOKEN + "\n")
    (tmp_path / "pw.txt").write_text("s3cret\n")
    values = {
        "PAAS_AGENT_ROOT": str(tmp_path),
        "PAAS_AGENT_TOKEN_FILE": str(tmp_path / "token.txt"),
        "PAAS_AGENT_REGISTRY": "127.0.0.1:5000",
        "PAAS_AGENT_REGISTRY_USER": "bob",
        "PAAS_AGENT_REGISTRY_PASSWORD_FILE": str(tmp_path / "pw.txt"),
    }
    config = AgentConfig.from_env(values)
    assert config.token == TOKEN
    assert config.registry_password == "s3cret"


def test_it_refuses_a_short_token(tmp_path):
    with pytest.raises(ConfigError, match="at least 16"):
        AgentConfig.from_env(env(tmp_path, TOKEN="short"))


def test_it_refuses_to_start_without_a_token_when_not_allowed_to_generate_one(tmp_path):
    with pytest.raises(ConfigError, match="no API token"):
        AgentConfig.from_env({"PAAS_AGENT_ROOT": str(tmp_path)}, generate_token=False)
    assert not (tmp_path / "token").exists()


def test_it_generates_a_private_token_once_and_keeps_it(tmp_path):
    root = tmp_path / "agent"
    first = AgentConfig.from_env({"PAAS_AGENT_ROOT": str(root)})
    mode = stat.S_IMODE((root / "token").stat().st_mode)
    assert mode == 0o600
    assert len(first.token) >= 32
    again = AgentConfig.from_env({"PAAS_AGENT_ROOT": str(root)}, generate_token=False)
    assert again.token == first.token


def test_an_empty_variable_means_unset_and_any_may_come_from_a_file(tmp_path):
    (tmp_path / "bridge").write_text("paasf1\n")
    values = env(tmp_path, LISTEN="", BRIDGE_FILE=str(tmp_path / "bridge"))
    config = AgentConfig.from_env(values)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 7070)
    assert config.bridge == "paasf1"


def test_it_refuses_registry_credentials_without_their_registry(tmp_path):
    values = env(tmp_path, REGISTRY_USER="bob", REGISTRY_PASSWORD="pw")
    with pytest.raises(ConfigError, match="PAAS_AGENT_REGISTRY "):
        AgentConfig.from_env(values)


def test_route_ports_answer_no_one_until_router_sources_are_given(tmp_path):
    assert AgentConfig.from_env(env(tmp_path)).policy_settings().router_sources == ()


def test_router_sources_come_from_the_join_unless_the_setting_says_otherwise(tmp_path):
    (tmp_path / "router_sources").write_text("10.1.0.1/32,10.2.0.0/24\n")
    joined = AgentConfig.from_env(env(tmp_path))
    assert joined.router_sources == (IPv4Network("10.1.0.1/32"), IPv4Network("10.2.0.0/24"))
    assert joined.policy_settings().router_sources == joined.router_sources
    assert not joined.router_sources_pinned  # the control plane's pushes apply
    overridden = AgentConfig.from_env(env(tmp_path, ROUTER_SOURCES="192.0.2.7"))
    assert overridden.router_sources == (IPv4Network("192.0.2.7/32"),)
    assert overridden.router_sources_pinned  # they are kept, not applied


def test_a_bad_router_sources_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "router_sources").write_text("10.1.0.1\nrouter.example\n")
    with pytest.raises(ConfigError, match="router_sources .*'router.example'"):
        AgentConfig.from_env(env(tmp_path))
