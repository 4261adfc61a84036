"""The persisted container records (state.json)."""

from __future__ import annotations

import json

import pytest

from runtime_agent import wire
from runtime_agent.containers.records import ContainerRecord, Store, atomic_write
from runtime_agent.containers.supervision import Supervision
from runtime_agent.host.errors import NotFound
from runtime_agent.wire import ContainerState


def _request(name: str = "web") -> wire.CreateContainer:
    return wire.parse_create(
        {
            "name": name,
            "image": "127.0.0.1:5000/app:v1",
            "cmd": ["python3", "-m", "http.server"],
            "env": {"A": "1"},
            "ports": [{"container_port": 8000, "host_port": 18000}],
            "limits": {"memory_bytes": 64 * 1024 * 1024},
            "restart": "on-failure:3",
            "labels": {"app": "web"},
        }
    )


def test_a_record_survives_a_save_and_load(tmp_path):
    store = Store(tmp_path / "containers")
    rec = ContainerRecord(
        name="web",
        request=_request(),
        sup=Supervision(state=ContainerState.RUNNING, pid=1234, restart_count=2),
        image_digest="sha256:" + "a" * 64,
        created_at=1.5,
        address="10.88.0.5",
        prepared=True,
    )
    store.save(rec)
    assert Store(tmp_path / "containers").load("web") == rec


def test_a_new_container_dir_is_root_s_alone(tmp_path):
    store = Store(tmp_path / "containers")
    store.save(ContainerRecord(name="web", request=_request(), sup=Supervision()))
    assert store.container_dir("web").stat().st_mode & 0o777 == 0o700


def test_load_all_skips_a_corrupt_record_but_keeps_the_others(tmp_path):
    store = Store(tmp_path / "containers")
    store.save(ContainerRecord(name="good", request=_request("good")))
    (tmp_path / "containers" / "bad").mkdir()
    (tmp_path / "containers" / "bad" / "state.json").write_text("{not json")
    assert list(store.load_all()) == ["good"]


def test_loading_an_unknown_container_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        Store(tmp_path).load("nope")


def test_a_name_that_could_escape_the_directory_is_refused(tmp_path):
    with pytest.raises(NotFound):
        Store(tmp_path).container_dir("../etc")


def test_atomic_write_replaces_the_file_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "state.json"
    atomic_write(target, b'{"a": 1}')
    atomic_write(target, b'{"a": 2}')
    assert json.loads(target.read_bytes()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_delete_removes_the_whole_directory(tmp_path):
    store = Store(tmp_path)
    store.save(ContainerRecord(name="web", request=_request()))
    (tmp_path / "web" / "logs").mkdir()
    store.delete("web")
    assert not (tmp_path / "web").exists()
