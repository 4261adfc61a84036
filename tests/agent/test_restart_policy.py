"""The restart policy state machine, driven with a fake clock (time is the
only boundary it has: it does no I/O)."""

from __future__ import annotations

import pytest

from runtime_agent.containers.supervision import (
    Action,
    BackoffConfig,
    Exited,
    Started,
    StartFailed,
    StartRequested,
    StopRequested,
    Supervision,
    Tick,
    transition,
)
from runtime_agent.wire import ContainerState as S
from runtime_agent.wire import RestartPolicy
from runtime_agent.wire import RestartPolicyName as P

CFG = BackoffConfig(base_s=1.0, cap_s=8.0, reset_after_s=60.0)


class Clock:
    """A fake clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Machine:
    """One supervised container, as the manager would drive it."""

    def __init__(self, policy: RestartPolicy, cfg: BackoffConfig = CFG) -> None:
        self.sup = Supervision()
        self.policy = policy
        self.cfg = cfg
        self.clock = Clock()
        self.launches = 0

    def send(self, event) -> list[Action]:
        self.sup, actions = transition(self.sup, event, self.clock.now, self.policy, self.cfg)
        self.launches += actions.count(Action.LAUNCH)
        return actions

    def start(self, pid: int = 100) -> None:
        assert self.send(StartRequested()) == [Action.LAUNCH]
        self.send(Started(pid))

    def wait_for_restart(self, limit_s: float = 1000.0) -> float:
        """Tick every 0.25 s (exact in binary floating point) until a launch is
        asked for; return the delay."""
        waited = 0.0
        while waited < limit_s:
            if self.send(Tick()) == [Action.LAUNCH]:
                self.send(Started(200))
                return waited
            self.clock.advance(0.25)
            waited += 0.25
        raise AssertionError("no restart")


def test_it_runs_a_started_container():
    m = Machine(RestartPolicy(P.NO))
    m.start(pid=42)
    assert m.sup.state == S.RUNNING
    assert m.sup.pid == 42
    assert m.sup.started_at == m.clock.now


def test_it_does_not_restart_with_policy_no():
    m = Machine(RestartPolicy(P.NO))
    m.start()
    m.send(Exited(1))
    assert m.sup.state == S.EXITED
    assert m.sup.exit_code == 1
    m.clock.advance(100)
    assert m.send(Tick()) == []


def test_on_failure_does_not_restart_a_clean_exit():
    m = Machine(RestartPolicy(P.ON_FAILURE))
    m.start()
    m.send(Exited(0))
    assert m.sup.state == S.EXITED


def test_on_failure_restarts_a_crash_after_the_base_delay():
    m = Machine(RestartPolicy(P.ON_FAILURE))
    m.start()
    m.send(Exited(3))
    assert m.sup.state == S.BACKOFF
    assert m.sup.next_restart_at == m.clock.now + 1.0
    assert m.wait_for_restart() == 1.0
    assert m.sup.state == S.RUNNING
    assert m.sup.restart_count == 1


def test_a_crash_loop_backs_off_with_doubling_delays_up_to_the_cap():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    delays = []
    for _ in range(6):
        m.clock.advance(0.5)  # crashes half a second after each start
        m.send(Exited(1))
        delays.append(m.wait_for_restart())
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert m.sup.restart_count == 6


def test_always_restarts_even_a_clean_exit():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    m.send(Exited(0))
    assert m.sup.state == S.BACKOFF


def test_a_long_clean_run_resets_the_backoff():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    for _ in range(3):
        m.send(Exited(1))
        m.wait_for_restart()
    m.clock.advance(61)  # longer than reset_after_s
    m.send(Exited(1))
    assert m.wait_for_restart() == 1.0


def test_a_tick_during_a_long_run_forgives_earlier_crashes():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    m.send(Exited(1))
    m.wait_for_restart()
    assert m.sup.failures == 1
    m.clock.advance(60)
    m.send(Tick())
    assert m.sup.failures == 0


def test_on_failure_gives_up_after_max_retries():
    m = Machine(RestartPolicy(P.ON_FAILURE, max_retries=2))
    m.start()
    m.send(Exited(1))
    m.wait_for_restart()
    m.send(Exited(1))
    m.wait_for_restart()
    m.send(Exited(1))
    assert m.sup.state == S.DEAD
    assert m.sup.restart_count == 2
    assert m.launches == 3


def test_a_stop_by_request_never_restarts_even_with_always():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    m.send(StopRequested())
    assert m.sup.state == S.STOPPING
    m.send(Exited(143))
    assert m.sup.state == S.EXITED
    assert m.sup.exit_code == 143
    m.clock.advance(1000)
    assert m.send(Tick()) == []


def test_a_stop_during_backoff_cancels_the_pending_restart():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    m.send(Exited(1))
    m.send(StopRequested())
    assert m.sup.state == S.EXITED
    m.clock.advance(1000)
    assert m.send(Tick()) == []


def test_a_start_by_request_after_a_stop_resets_counters():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.start()
    m.send(Exited(1))
    m.wait_for_restart()
    m.send(StopRequested())
    m.send(Exited(0))
    m.start()
    assert m.sup.state == S.RUNNING
    assert m.sup.restart_count == 0
    assert m.sup.failures == 0
    assert not m.sup.stop_requested


def test_starting_a_running_container_is_a_no_op():
    m = Machine(RestartPolicy(P.NO))
    m.start()
    assert m.send(StartRequested()) == []
    assert m.sup.state == S.RUNNING


def test_an_unknown_exit_status_counts_as_a_failure_for_on_failure():
    m = Machine(RestartPolicy(P.ON_FAILURE))
    m.start()
    m.send(Exited(None))
    assert m.sup.state == S.BACKOFF


def test_a_failed_start_without_a_restart_policy_is_dead():
    m = Machine(RestartPolicy(P.NO))
    m.send(StartRequested())
    m.send(StartFailed("exec: no such file"))
    assert m.sup.state == S.DEAD
    assert m.sup.error == "exec: no such file"


def test_a_failed_start_with_a_restart_policy_backs_off():
    m = Machine(RestartPolicy(P.ALWAYS))
    m.send(StartRequested())
    m.send(StartFailed("busy"))
    assert m.sup.state == S.BACKOFF


def test_oom_kill_is_recorded():
    m = Machine(RestartPolicy(P.NO))
    m.start()
    m.send(Exited(137, oom_killed=True))
    assert m.sup.oom_killed
    assert m.sup.exit_code == 137


@pytest.mark.parametrize("state", list(S))
def test_supervision_round_trips_through_json(state):
    sup = Supervision(state=state, pid=5, exit_code=2, restart_count=3, next_restart_at=1.5)
    assert Supervision.from_json(sup.to_json()) == sup
