"""The API's shapes, as the OpenAPI schema documents them. Requests are
strict (a count is a JSON number, never "3"); responses keep the field
names and formats the hand-written views had (times are ISO 8601 strings).
"""

from __future__ import annotations

from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic import AfterValidator, ConfigDict, StrictInt, StrictStr


def _no_nul(value: str) -> str:
    # A NUL is never meaningful here and PostgreSQL refuses it in any text:
    # refused at the edge, it is a 400 naming the field, not a 500.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]
# A name in a path (/apps/{name}, /builds/{build_id}...).
PathName = Annotated[str, Field(max_length=300), AfterValidator(_no_nul)]
Time = Annotated[str, Field(description="ISO 8601 date and time")]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
ReleaseNumber = Annotated[int, Field(ge=1, le=2**31)]


class Error(Schema):
    """Every error: a stable code, a sentence, and the input at fault if any."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="invalid, not_found, forbidden, conflict, unauthenticated, …")
    message: str
    field: str | None = None


class Page(Schema):
    """Pagination of a list: ``total`` items; ask again with ``offset=next_offset``
    while it is not null."""

    total: int
    next_offset: int | None


# --- apps ---------------------------------------------------------------


class AppIn(Schema):
    name: Text = Field(description="a DNS label, unique on the platform", max_length=100)
    team: StrictInt | None = Field(None, description="team id; your personal team if omitted")


class AppOut(Schema):
    name: str
    team: int
    url: str = Field(description="where the app answers: http://<app>.<PAAS_DOMAIN>[:port]")
    created_at: Time


class AppList(Page):
    apps: list[AppOut]


class ConfirmIn(Schema):
    confirm: Text = Field("", description="the app's name, typed again", max_length=100)


class AppDeleting(Schema):
    app: str
    deleting: bool


# --- builds -------------------------------------------------------------


class BuildOut(Schema):
    id: str
    app: str
    number: int
    state: str
    error: str
    kind: str
    image: str
    digest: str
    created_at: Time
    finished_at: Time | None


class LogLine(Schema):
    seq: int
    text: str


class BuildDetail(BuildOut):
    log: list[LogLine] = Field(description="lines after ?since=, oldest first")


class BuildList(Page):
    builds: list[BuildOut]


class BuildArgs(Schema):
    build_args: dict[str, str]


class BuildSecretOut(Schema):
    name: str
    updated_at: Time


class BuildSecrets(Schema):
    build_secrets: list[BuildSecretOut] = Field(description="names only, never values")


class ValueIn(Schema):
    value: Text | None = None


class BuildArgOut(Schema):
    name: str
    value: str


# --- releases, config, formation ---------------------------------------


class ReleaseOut(Schema):
    number: int
    label: str
    state: str
    cause: str
    description: str
    error: str
    image: str
    config_keys: list[str] = Field(description="names only: values are never in a release")
    process_types: dict[str, str]
    created_at: Time
    deployed_at: Time | None


class ReleaseList(Page):
    releases: list[ReleaseOut]


class ImageIn(Schema):
    image: Text = Field("", description="an image of this app: registry/app@sha256:…")


class ImageQueued(Schema):
    app: str
    image: str
    queued: bool


class ConfigVar(Schema):
    key: str
    value: str = Field(description="masked unless you own the app's team")


class ConfigOut(Schema):
    config: list[ConfigVar]


class ConfigIn(Schema):
    set: dict[Text, Text] | None = Field(None, description="KEY: value to set")
    unset: list[Text] | None = Field(None, description="keys to remove")


class ConfigChanged(Schema):
    release: ReleaseOut | None = Field(description="the new release, if the app has an image")


class FormationEntry(Schema):
    process_type: str
    count: int
    memory_bytes: int
    tcp_port: int | None


class FormationOut(Schema):
    formation: list[FormationEntry]


class ScaleIn(Schema):
    count: StrictInt | None = Field(None, ge=-(2**31), le=2**31, description="instances to run")
    memory_bytes: StrictInt | None = Field(
        None, ge=0, le=2**50, description="memory limit of each instance, in bytes"
    )
    tcp_port: Port | None = Field(None, description="publish this TCP port (null: stop)")


# --- instances, actions, audit -----------------------------------------


class InstanceOut(Schema):
    name: str
    process_type: str
    index: int
    release: int
    host: str
    desired: str
    state: str
    state_label: str
    healthy: bool
    address: str
    port: int
    published: str | None
    exit_code: int | None
    oom_killed: bool
    restart_count: int


class InstanceList(Page):
    instances: list[InstanceOut]


class SignalIn(Schema):
    signal: Text = Field("KILL", description="for kill: a signal name or number")


class InstanceQueued(Schema):
    instance: str
    action: str
    queued: bool


class AppQueued(Schema):
    app: str
    action: str
    queued: bool


class AuditOut(Schema):
    actor: str
    action: str
    target: str
    result: str
    detail: str
    at: Time


class AuditList(Page):
    audit: list[AuditOut]


# --- domains ------------------------------------------------------------


class CertificateInfo(Schema):
    names: list[str]
    not_after: Time
    fingerprint_sha256: str


class DomainOut(Schema):
    hostname: str
    certificate: CertificateInfo | None


class DomainList(Page):
    domains: list[DomainOut]


class DomainIn(Schema):
    hostname: Text = Field(max_length=300)


class CertificateIn(Schema):
    certificate: Text = Field(description="PEM chain, leaf first")
    key: Text = Field(description="PEM private key; never shown again")


# --- logs ---------------------------------------------------------------


class AppLogLine(Schema):
    id: int = Field(description="the line's sequence number in the app's log")
    time: Time
    source: str = Field(description="app, build, router or platform")
    process_type: str
    instance: str = Field(description="e.g. web.1")
    stream: str = Field(description="stdout, stderr or empty")
    text: str


class AppLogs(Schema):
    lines: list[AppLogLine] = Field(description="oldest first")
    next: int = Field(description="?since= this to get the lines that come after these")
    next_before: int | None = Field(description="?before= this for older lines; null: none")
    websocket: str = Field(description="live follow for a signed-in browser session")


# --- hosts --------------------------------------------------------------


class HostOut(Schema):
    name: str
    agent_url: str
    tls_fingerprint: str = Field(description="SHA-256 of the agent's pinned certificate")
    state: str
    memory_bytes: int
    cpus: int
    agent_version: str
    last_heartbeat_at: Time | None
    last_error: str
    router_sources: list[str] | None = Field(
        description="who its route ports answer, as its agent last accepted (null: not "
        "confirmed yet; the heartbeat pushes them)"
    )
    created_at: Time


class HostList(Page):
    hosts: list[HostOut]


class HostStateIn(Schema):
    state: Literal["ready", "draining", "removed"]


class JoinTokenIn(Schema):
    note: Text = Field("", max_length=200)
    rejoin: Text | None = Field(
        None, max_length=100, description="a joined host's name: a token to join it again"
    )


class JoinTokenOut(Schema):
    join_token: str = Field(description="shown once; give it to the new host's agent")
    expires_at: Time


class HostJoinIn(Schema):
    join_token: Text = ""
    name: Text = ""
    agent_url: Text = Field("", description="https://ADDRESS:PORT")
    tls_fingerprint: Text = Field("", description="SHA-256 of the agent's certificate")


class HostJoined(Schema):
    host: str
    credential: str
    # Who the host's route ports answer (runtime_agent.join keeps it in
    # the agent's ROOT/router_sources); empty for a host on this machine.
    router_sources: list[str]


# --- tokens -------------------------------------------------------------


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: Time
    last_used_at: Time | None
    revoked_at: Time | None


class TokenList(Page):
    tokens: list[TokenOut]


class TokenIn(Schema):
    name: Text = Field("token", max_length=100)


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored hashed")


# --- registry credentials (pulling images of other registries) ---------


class RegistryCredentialOut(Schema):
    registry: str
    username: str
    updated_at: Time


class RegistryCredentialList(Schema):
    registry_credentials: list[RegistryCredentialOut] = Field(description="never a password")


class RegistryCredentialIn(Schema):
    username: Text | None = None
    password: Text | None = Field(None, description="stored sealed; never shown again")


class RegistryCredentialSaved(Schema):
    registry: str
    username: str


class RunIn(Schema):
    command: Text = Field(description="a shell command line, run as `sh -c` in the release's image")


class RunOut(Schema):
    exit_code: int | None = Field(description="null when it was stopped (timed out)")
    oom_killed: bool
    timed_out: bool
    output: list[str] = Field(description="its last output lines (stdout and stderr)")
