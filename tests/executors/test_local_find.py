from __future__ import annotations

import socket

from executors.base import State

from .conftest import make_launch, pid_of, read_all, wait_until


def test_find_a_forgotten_process_by_key(make_executor, exits):
    first = make_executor(exits)
    launch = make_launch(command=["sleep", "60"])
    sub = first.submit(launch)
    assert first.find(launch) == sub
    # A new executor (the worker restarted) knows nothing but the key. Polled: right after
    # exec, /proc/<pid>/environ can briefly read empty (recovery looks a minute later).
    restarted = make_executor()
    wait_until(lambda: restarted.find(launch) == sub)
    first.terminate(sub.external_id, "done")
    exits.wait_for(sub.external_id)


def test_find_returns_the_job_not_its_children(make_executor, exits):
    # The background sleep inherits SUNDIAL_IDEMPOTENCY_KEY; the job is the session leader.
    owner = make_executor(exits)
    launch = make_launch(shell="sleep 60 & echo $!; wait")
    sub = owner.submit(launch)
    wait_until(lambda: read_all(owner, sub.log_ref))
    restarted = make_executor()
    wait_until(lambda: restarted.find(launch) == sub)


def test_find_unknown_key(executor):
    executor.submit(make_launch(key="known-key", command=["sleep", "60"]))
    assert executor.find(make_launch(key="unknown-key")) is None
    assert executor.find(make_launch(key="known")) is None  # a prefix is not a match
    assert executor.find(make_launch(key="../bad key")) is None


def test_statuses_owned_foreign_other_host_and_finished(make_executor, exits):
    owner = make_executor(exits)
    other = make_executor()
    running = owner.submit(make_launch(command=["sleep", "60"]))
    done = owner.submit(make_launch(shell="exit 4"))
    exits.wait_for(done.external_id)
    host, pid, starttime = running.external_id.split(":")
    ids = [
        running.external_id,
        done.external_id,
        "elsewhere-host:1:1",
        f"{host}:{pid}:{int(starttime) + 1}",  # the pid, but another process instance
        "garbage",
    ]

    mine = owner.statuses(ids)
    assert mine.keys() == {running.external_id, done.external_id}
    assert mine[running.external_id].state is State.RUNNING
    assert mine[running.external_id].started_at is not None
    assert (mine[done.external_id].state, mine[done.external_id].exit_code) == (State.FAILED, 4)

    theirs = other.statuses(ids)
    assert theirs.keys() == {running.external_id}  # alive per /proc; the exit code is unknown
    assert theirs[running.external_id].state is State.RUNNING
    started = theirs[running.external_id].started_at
    assert abs((started - mine[running.external_id].started_at).total_seconds()) < 2

    owner.terminate(running.external_id, "done")
    exits.wait_for(running.external_id)
    assert other.statuses([running.external_id]) == {}
    assert host == socket.gethostname() and pid_of(running.external_id) == int(pid)
