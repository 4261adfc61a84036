"""The app page's deploy panel (releases, processes, config vars), as an
inclusion tag so the app page's view stays as it is."""

from __future__ import annotations

from typing import Any

from django import template

from paas.accounts.services import ROLE_CAN, role_in_team
from paas.applications.models import App
from paas.applications.registry_credentials import registry_credentials_of
from paas.applications.views_data import config_json
from paas.hosts.live import RELEASES_SHOWN

register = template.Library()


@register.inclusion_tag("front/_deploy_panel.html", takes_context=True)
def deploy_panel(context: dict[str, Any], app: App) -> dict[str, Any]:
    request = context["request"]
    role = role_in_team(user=request.user, team_id=app.team_id)
    return {
        "app": app,
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "can_deploy": role in ROLE_CAN["deploy"],
        "can_manage": role in ROLE_CAN["manage"],
        "releases": app.releases.all()[:RELEASES_SHOWN],
        "formation": app.formation.all(),
        "instances": app.instances.select_related("release", "host").order_by(
            "process_type", "index"
        ),
        "config": config_json(app, reveal=role in ROLE_CAN["manage"]),
        "audit": app.audit_entries.all()[:20],
        "registry_credentials": registry_credentials_of(app=app),
        "instance_actions": ["stop", "start", "restart", "kill"],
        "app_actions": ["restart", "stop", "start"],
    }
