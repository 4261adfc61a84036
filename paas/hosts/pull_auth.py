"""The credential an agent gets for one pull: the least that lets it pull
the image it is asked to run, and nothing it could use for anything else.

- an image in the platform's registry: a pull token for that one repository
  (paas.builds.registry_access), minted per create and short-lived;
- an image in another registry: the username and password the app's team
  stored for that registry (paas.applications.registry_credentials), if any;
- otherwise none (a public image).

It travels beside the create request, never in it (the agent stores the
request), and only to the host that pulls.
"""

from __future__ import annotations

from django.conf import settings

from paas.applications.models import App
from paas.builds.registry_access import registry_pull_token
from paas.hosts.models import Host
from runtime_agent import wire
from runtime_agent.images.refs import ImageRef


def pull_auth(*, app: App, image: str, host: Host) -> wire.RegistryAuth | None:
    ref = ImageRef.parse(image)
    if ref.registry == settings.PAAS_REGISTRY:
        token = registry_pull_token(repository=ref.repository, subject=f"host:{host.name}")
        return wire.RegistryAuth(ref.registry, token=token) if token else None
    from paas.applications.registry_credentials import registry_credential_for

    found = registry_credential_for(app=app, registry=ref.registry)
    if found is None:
        return None
    username, password = found
    return wire.RegistryAuth(ref.registry, username=username, password=password)
