from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from paas.hosts.models import Host, HostState, Instance, JoinToken
from paas.hosts.services import host_set_state, join_token_create


def _set_state(state: HostState) -> Any:
    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        for host in queryset:
            host_set_state(user=request.user, host=host, state=state)  # type: ignore[arg-type]
        messages.success(request, f"{queryset.count()} host(s) now {state.label.lower()}.")

    action.__name__ = f"make_{state.value}"
    action.short_description = {  # type: ignore[attr-defined]
        HostState.DRAINING: "Drain (move instances away, place no new ones)",
        HostState.READY: "Make ready",
        HostState.REMOVED: "Remove",
    }[state]
    return action


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "agent_url", "state", "memory_bytes", "agent_version",
                    "last_heartbeat_at"]  # fmt: skip
    readonly_fields = ["memory_bytes", "cpus", "agent_version", "last_heartbeat_at", "last_error"]
    exclude = ["token"]  # the agent's credential is never shown
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}  # agents speak http
    actions = [_set_state(HostState.DRAINING), _set_state(HostState.READY),
               _set_state(HostState.REMOVED)]  # fmt: skip


@admin.register(JoinToken)
class JoinTokenAdmin(admin.ModelAdmin):
    """Adding one makes a new one-time token and shows it once."""

    list_display = ["prefix", "note", "created_at", "expires_at", "used_at", "host"]
    fields = ["note"]

    def save_model(self, request: HttpRequest, obj: JoinToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = join_token_create(user=request.user, note=obj.note)  # type: ignore[arg-type]
        obj.pk = token.pk
        messages.warning(
            request,
            f"Join token (shown only now, valid once): {raw} — on the new host run "
            "python -m runtime_agent.join --control-plane URL --join-token TOKEN "
            "--name NAME --agent-url http://ADDRESS:PORT",
        )


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["container_name", "host", "desired", "state", "healthy", "address"]
    list_filter = ["state", "host"]
