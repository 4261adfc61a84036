from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from paas.core.errors import PaasError
from paas.hosts.models import Host, HostState, Instance, JoinToken
from paas.hosts.router_push import host_router_sources_push
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


@admin.action(description="Push router sources now")
def push_router_sources(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Host]) -> None:
    for host in queryset.exclude(state=HostState.REMOVED):
        try:
            answer = host_router_sources_push(host=host, actor=request.user)  # type: ignore[arg-type]
        except PaasError as exc:
            messages.error(request, f"{host.name}: not pushed: {exc.message}")
            continue
        said = answer.message or "route ports answer " + (", ".join(answer.in_effect) or "no one")
        level = messages.WARNING if answer.overridden_by else messages.SUCCESS
        messages.add_message(request, level, f"{host.name}: {said}")


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "agent_url", "state", "memory_bytes", "agent_version",
                    "last_heartbeat_at"]  # fmt: skip
    # The pin changes only by joining again (a re-join token), never by an edit.
    readonly_fields = ["tls_fingerprint", "memory_bytes", "cpus", "agent_version",
                       "last_heartbeat_at", "last_error", "router_sources"]  # fmt: skip
    exclude = ["token"]  # the agent's credential is never shown
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # agents speak https
    actions = [_set_state(HostState.DRAINING), _set_state(HostState.READY),
               _set_state(HostState.REMOVED), push_router_sources]  # fmt: skip


@admin.register(JoinToken)
class JoinTokenAdmin(admin.ModelAdmin):
    """Adding one makes a new one-time token and shows it once."""

    list_display = ["prefix", "note", "created_at", "expires_at", "used_at", "host", "rejoin"]
    fields = ["note", "rejoin"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "rejoin":
            kwargs["queryset"] = Host.objects.exclude(state=HostState.REMOVED)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: JoinToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = join_token_create(
            user=request.user,  # type: ignore[arg-type]
            note=obj.note,
            rejoin=obj.rejoin,
        )
        obj.pk = token.pk
        messages.warning(
            request,
            f"Join token (shown only now, valid once): {raw} — on the new host run "
            "python -m runtime_agent.join --control-plane URL --join-token TOKEN "
            "--name NAME --agent-url https://ADDRESS:PORT",
        )


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["container_name", "host", "desired", "state", "healthy", "address"]
    list_filter = ["state", "host"]
