"""Restart policy as a state machine, in the style of supervisor.

One pure function, :func:`transition`, takes the supervision state of a
container, an event and the current time, and returns the new state plus
the actions the manager must carry out. It does no I/O and reads no clock,
so every rule (backoff growth, the cap, the reset after a clean run, retry
limits, "a stop by request never restarts") is tested with a fake clock.

States (``runtime_agent.states.ContainerState``)::

    CREATED --start--> STARTING --started--> RUNNING --exited--> BACKOFF --tick--> STARTING
                          |                     |                   (delay due)
                          +--start failed-------+--exited, no restart--> EXITED
                                                |--retries used up-----> DEAD
                             RUNNING --stop requested--> STOPPING --exited--> EXITED
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runtime_agent.wire import ContainerState, RestartPolicy, RestartPolicyName

S = ContainerState


@dataclass(frozen=True)
class BackoffConfig:
    """Delay before restart number n (n counted since the last clean run) is
    ``min(cap_s, base_s * 2**n)``; a run of ``reset_after_s`` forgives all."""

    base_s: float = 1.0
    cap_s: float = 300.0
    reset_after_s: float = 600.0


@dataclass(frozen=True)
class Supervision:
    state: ContainerState = S.CREATED
    pid: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None  # epoch seconds of the last start
    finished_at: float | None = None  # epoch seconds of the last exit
    restart_count: int = 0  # restarts by policy since the last start by request
    failures: int = 0  # consecutive crashes since the last clean run: the backoff exponent
    next_restart_at: float | None = None
    stop_requested: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Supervision:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = ContainerState(values.get("state", S.CREATED))
        return cls(**values)


# --- events -------------------------------------------------------------------


@dataclass(frozen=True)
class StartRequested:
    """A person (or the API) asked for the container to run."""


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class StartFailed:
    error: str


@dataclass(frozen=True)
class Exited:
    exit_code: int | None  # None: the process was adopted, its status is unknowable
    oom_killed: bool = False


@dataclass(frozen=True)
class StopRequested:
    pass


@dataclass(frozen=True)
class Tick:
    pass


Event = StartRequested | Started | StartFailed | Exited | StopRequested | Tick


class Action(StrEnum):
    LAUNCH = "launch"  # create and start the container process


Result = tuple[Supervision, list[Action]]

_ALIVE = (S.STARTING, S.RUNNING, S.STOPPING)


def transition(
    sup: Supervision, event: Event, now: float, policy: RestartPolicy, cfg: BackoffConfig
) -> Result:
    """Advance ``sup`` by ``event`` at time ``now``."""
    if isinstance(event, StartRequested):
        return _on_start_requested(sup)
    if isinstance(event, Started):
        return _on_started(sup, event, now)
    if isinstance(event, StartFailed):
        failed = dataclasses.replace(sup, error=event.error)
        return _after_exit(failed, None, now, policy, cfg, start_failed=True)
    if isinstance(event, Exited):
        exited = dataclasses.replace(sup, oom_killed=event.oom_killed)
        return _after_exit(exited, event.exit_code, now, policy, cfg, start_failed=False)
    if isinstance(event, StopRequested):
        return _on_stop_requested(sup)
    return _on_tick(sup, now, cfg)


def _on_start_requested(sup: Supervision) -> Result:
    if sup.state in _ALIVE:
        return sup, []  # already running or on its way: starting twice is a no-op
    fresh = dataclasses.replace(
        sup,
        state=S.STARTING,
        stop_requested=False,
        restart_count=0,
        failures=0,
        next_restart_at=None,
        error=None,
    )
    return fresh, [Action.LAUNCH]


def _on_started(sup: Supervision, event: Started, now: float) -> Result:
    running = dataclasses.replace(
        sup,
        state=S.RUNNING,
        pid=event.pid,
        started_at=now,
        finished_at=None,
        exit_code=None,
        oom_killed=False,
        error=None,
    )
    return running, []


def _on_stop_requested(sup: Supervision) -> Result:
    if sup.state in _ALIVE:
        return dataclasses.replace(sup, state=S.STOPPING, stop_requested=True), []
    if sup.state == S.BACKOFF:
        # Waiting to restart: the stop simply cancels the pending restart.
        return dataclasses.replace(
            sup, state=S.EXITED, stop_requested=True, next_restart_at=None
        ), []
    return dataclasses.replace(sup, stop_requested=True), []


def _on_tick(sup: Supervision, now: float, cfg: BackoffConfig) -> Result:
    if sup.state == S.BACKOFF and sup.next_restart_at is not None and now >= sup.next_restart_at:
        restarting = dataclasses.replace(
            sup,
            state=S.STARTING,
            restart_count=sup.restart_count + 1,
            next_restart_at=None,
        )
        return restarting, [Action.LAUNCH]
    if sup.state == S.RUNNING and sup.failures and _ran_cleanly(sup, now, cfg):
        return dataclasses.replace(sup, failures=0), []
    return sup, []


def _ran_cleanly(sup: Supervision, now: float, cfg: BackoffConfig) -> bool:
    return sup.started_at is not None and now - sup.started_at >= cfg.reset_after_s


def _after_exit(
    sup: Supervision,
    exit_code: int | None,
    now: float,
    policy: RestartPolicy,
    cfg: BackoffConfig,
    *,
    start_failed: bool,
) -> Result:
    failures = 0 if (not start_failed and _ran_cleanly(sup, now, cfg)) else sup.failures
    done = dataclasses.replace(
        sup, pid=None, exit_code=exit_code, finished_at=now, failures=failures
    )
    if sup.stop_requested:
        # A stop by request never restarts, whatever the policy says.
        return dataclasses.replace(done, state=S.EXITED), []
    verdict = _policy_verdict(done, exit_code, policy, start_failed=start_failed)
    if verdict != S.BACKOFF:
        return dataclasses.replace(done, state=verdict), []
    delay = min(cfg.cap_s, cfg.base_s * (2**done.failures))
    waiting = dataclasses.replace(
        done, state=S.BACKOFF, failures=done.failures + 1, next_restart_at=now + delay
    )
    return waiting, []


def _policy_verdict(
    sup: Supervision, exit_code: int | None, policy: RestartPolicy, *, start_failed: bool
) -> ContainerState:
    """BACKOFF (restart after a delay), EXITED (done) or DEAD (gave up)."""
    if policy.name == RestartPolicyName.NO:
        # A process that could not even be started is a runtime failure, not an exit.
        return S.DEAD if start_failed else S.EXITED
    if policy.name == RestartPolicyName.ON_FAILURE:
        # An adopted container's status is unknown (None): count it as a failure,
        # erring on the side of keeping the service up.
        if exit_code == 0 and not start_failed:
            return S.EXITED
        if policy.max_retries and sup.restart_count >= policy.max_retries:
            return S.DEAD
    return S.BACKOFF
