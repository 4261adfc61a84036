"""How releases, config, formation, instances and audit entries look as
JSON (the API) and as template rows (the app page)."""

from __future__ import annotations

from typing import Any

from paas.applications.models import App, AuditEntry, Release
from paas.hosts.models import Instance

MASK = "••••••••"


def release_json(release: Release) -> dict[str, Any]:
    return {
        "number": release.number,
        "label": release.label,
        "state": release.state,
        "cause": release.cause,
        "description": release.description,
        "error": release.error,
        "image": release.image,
        "config_keys": sorted(release.config),
        "process_types": release.process_types,
        "created_at": release.created_at.isoformat(),
        "deployed_at": release.deployed_at.isoformat() if release.deployed_at else None,
    }


def config_json(app: App, *, reveal: bool) -> list[dict[str, str]]:
    """Values only for owners; everyone else sees that a key is set."""
    return [
        {"key": key, "value": value if reveal else MASK}
        for key, value in app.config_vars.values_list("key", "value")
    ]


def formation_json(app: App) -> list[dict[str, Any]]:
    return [
        {
            "process_type": f.process_type,
            "count": f.count,
            "memory_bytes": f.memory_bytes,
            "tcp_port": f.tcp_port,
        }
        for f in app.formation.all()
    ]


def instance_json(instance: Instance) -> dict[str, Any]:
    return {
        "name": instance.container_name,
        "process_type": instance.process_type,
        "index": instance.index,
        "release": instance.release.number,
        "host": instance.host.name,
        "desired": instance.desired,
        "state": instance.state,
        "state_label": instance.get_state_display(),
        "healthy": instance.healthy,
        "address": instance.address,
        "port": instance.port,
        "published": f"{instance.host.name}:{instance.host_port}->{instance.tcp_port}"
        if instance.host_port
        else None,
        "exit_code": instance.exit_code,
        "oom_killed": instance.oom_killed,
        "restart_count": instance.restart_count,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "actor": entry.actor_name or "platform",
        "action": entry.action,
        "target": entry.target,
        "result": entry.result,
        "detail": entry.detail,
        "at": entry.created_at.isoformat(),
    }
