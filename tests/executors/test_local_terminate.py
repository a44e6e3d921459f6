from __future__ import annotations

import socket
import time

import pytest

import executors.local.executor
from executors.base import ExecutorError, State

from .conftest import is_alive, make_launch, pid_of, read_all, wait_until

# Prints a line once the trap is set, so the test knows SIGTERM will be ignored.
IGNORE_TERM = "trap '' TERM; echo trapped"


def _pid_printed(executor, log_ref: str) -> int:
    """The grandchild pid the job printed as its first log line."""
    wait_until(lambda: read_all(executor, log_ref))
    return int(read_all(executor, log_ref)[0])


def test_sigterm_ends_a_plain_process(executor, exits):
    sub = executor.submit(make_launch(command=["sleep", "60"], kill_grace_s=0.5))
    executor.terminate(sub.external_id, "user asked")
    status = exits.wait_for(sub.external_id)
    assert (status.state, status.exit_code) == (State.FAILED, -15)
    assert status.reason == "user asked"


def test_term_ignoring_group_is_killed_after_the_grace(executor, exits):
    sub = executor.submit(
        make_launch(shell="trap '' TERM; sleep 60 & echo $!; wait", kill_grace_s=0.5)
    )
    grandchild = _pid_printed(executor, sub.log_ref)
    start = time.monotonic()
    executor.terminate(sub.external_id, "timed out")
    status = exits.wait_for(sub.external_id)
    elapsed = time.monotonic() - start
    assert status.exit_code == -9
    assert 0.45 <= elapsed < 4
    wait_until(lambda: not is_alive(grandchild), timeout=2)


def test_grandchild_in_the_group_dies_with_the_job(executor, exits):
    sub = executor.submit(make_launch(shell="sleep 60 & echo $!; wait", kill_grace_s=0.5))
    grandchild = _pid_printed(executor, sub.log_ref)
    executor.terminate(sub.external_id, "stop")
    exits.wait_for(sub.external_id)
    wait_until(lambda: not is_alive(grandchild), timeout=2)


def test_leftovers_are_killed_when_the_leader_exits(executor, exits):
    # No terminate: the job's shell exits 0 and leaves a background sleep behind.
    sub = executor.submit(make_launch(shell="sleep 60 & echo $!"))
    status = exits.wait_for(sub.external_id)
    assert status.exit_code == 0
    grandchild = int(read_all(executor, sub.log_ref)[0])
    wait_until(lambda: not is_alive(grandchild), timeout=2)


def test_terminate_is_idempotent_and_keeps_the_first_deadline(executor, exits):
    sub = executor.submit(make_launch(shell=f"{IGNORE_TERM}; sleep 60", kill_grace_s=1.0))
    wait_until(lambda: read_all(executor, sub.log_ref))
    start = time.monotonic()
    executor.terminate(sub.external_id, "first")
    time.sleep(0.6)
    executor.terminate(sub.external_id, "second")  # must not push the SIGKILL to 1.6 s
    status = exits.wait_for(sub.external_id)
    assert time.monotonic() - start < 1.45
    assert (status.exit_code, status.reason) == (-9, "first")
    executor.terminate(sub.external_id, "after the end")  # a no-op, no error


def test_zero_grace_kills_at_once(executor, exits):
    sub = executor.submit(make_launch(shell=f"{IGNORE_TERM}; sleep 60", kill_grace_s=0))
    wait_until(lambda: read_all(executor, sub.log_ref))
    executor.terminate(sub.external_id, "now")
    assert exits.wait_for(sub.external_id, timeout=2).exit_code == -9


def test_terminate_a_process_of_another_executor(make_executor, exits, monkeypatch):
    monkeypatch.setattr(executors.local.executor, "_DEFAULT_GRACE_S", 0.3)
    owner = make_executor(exits)
    ended: list[tuple[str, object]] = []
    other = make_executor(ended.extend)
    plain = owner.submit(make_launch(command=["sleep", "60"]))
    stubborn = owner.submit(make_launch(shell="trap '' TERM; sleep 60 & echo $!; wait"))
    grandchild = _pid_printed(owner, stubborn.log_ref)
    other.terminate(plain.external_id, "orphan")
    assert exits.wait_for(plain.external_id).exit_code == -15
    other.terminate(stubborn.external_id, "orphan")
    other.terminate(stubborn.external_id, "orphan")  # idempotent here too
    assert exits.wait_for(stubborn.external_id).exit_code == -9
    wait_until(lambda: not is_alive(grandchild), timeout=2)
    wait_until(lambda: not other._targets)
    # The stopper hears of each end too, without an exit code (only the parent can read it).
    assert sorted((eid, st.exit_code, st.reason) for eid, st in ended) == sorted(
        [(plain.external_id, None, "orphan"), (stubborn.external_id, None, "orphan")]
    )
    other.terminate(plain.external_id, "gone")  # gone already: its end is reported at once
    assert ended[-1][0] == plain.external_id


def test_a_reused_pid_is_never_signalled(make_executor, exits):
    owner = make_executor(exits)
    other = make_executor()
    sub = owner.submit(make_launch(command=["sleep", "60"]))
    host, pid, starttime = sub.external_id.split(":")
    impostor = f"{host}:{pid}:{int(starttime) + 1}"
    other.terminate(impostor, "wrong process")
    owner.terminate(impostor, "wrong process")
    time.sleep(0.05)
    assert is_alive(pid_of(sub.external_id))
    assert owner.live_ids() == [sub.external_id]


def test_other_host_is_a_transient_error(executor):
    with pytest.raises(ExecutorError) as info:
        executor.terminate("elsewhere-host:123:456", "stop")
    assert not info.value.permanent
    assert "process runs on host elsewhere-host" in info.value.message
    assert socket.gethostname() != "elsewhere-host"


def test_malformed_id_is_a_permanent_error(executor):
    with pytest.raises(ExecutorError) as info:
        executor.terminate("i-0123456789", "stop")
    assert info.value.permanent
