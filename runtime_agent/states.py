"""Container states, as the agent reports them (supervisor's state machine)."""

from __future__ import annotations

from enum import StrEnum


class ContainerState(StrEnum):
    CREATED = "created"  # bundle and network ready, process not started
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "restarting"  # exited, waiting out the crash backoff before a restart
    STOPPING = "stopping"
    EXITED = "exited"  # stopped by request or exited and not to be restarted
    DEAD = "dead"  # gave up: restart limit reached or the runtime failed for good


class RestartPolicyName(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
