from __future__ import annotations

import dataclasses
import logging
import os
import threading
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from executors.base import ExecutorError, State
from executors.local.executor import LocalExecutor

from .conftest import is_alive, make_launch, pid_of, read_all, wait_until


def test_argv_runs_without_a_shell(executor, exits):
    # With a shell "$HOME" would be expanded; as an argv item it is printed verbatim.
    sub = executor.submit(make_launch(command=["echo", "$HOME", "a  b"]))
    status = exits.wait_for(sub.external_id)
    assert status.state is State.SUCCEEDED
    assert read_all(executor, sub.log_ref) == ["$HOME a  b"]


def test_shell_line_runs_under_sh(executor, exits):
    sub = executor.submit(make_launch(shell="for i in 1 2; do echo line$i; done | tr a-z A-Z"))
    exits.wait_for(sub.external_id)
    assert read_all(executor, sub.log_ref) == ["LINE1", "LINE2"]


def test_external_id_names_host_pid_and_starttime(executor, exits):
    launch = make_launch(command=["sleep", "5"])
    sub = executor.submit(launch)
    host, pid, starttime = sub.external_id.split(":")
    assert host == os.uname().nodename
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    assert stat[stat.rindex(b")") + 2 :].split()[19].decode() == starttime
    assert sub.log_ref == str(executor.log_dir / f"{launch.idempotency_key}.log")


def test_environment_is_minimal_plus_config_plus_launch(executor, exits, monkeypatch):
    for secret in ("DATABASE_URL", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(secret, "leaked")
    monkeypatch.setenv("LANG", "C.UTF-8")
    launch = make_launch(
        key="run-7-task-3-attempt-1",
        command=["env"],
        env={"FOO": "from-config", "BAR": "config", "SUNDIAL_ATTEMPT": "0"},
    )
    launch_env = {
        "SUNDIAL_RUN_ID": "7",
        "SUNDIAL_TASK_RUN_ID": "3",
        "SUNDIAL_ATTEMPT": "1",
        "SUNDIAL_API_URL": "http://api",
        "SUNDIAL_TOKEN": "tok",
        "BAR": "launch",
    }
    sub = executor.submit(dataclasses.replace(launch, env=launch_env))
    exits.wait_for(sub.external_id)
    env = dict(line.split("=", 1) for line in read_all(executor, sub.log_ref))
    assert env["SUNDIAL_RUN_ID"] == "7"
    assert env["SUNDIAL_ATTEMPT"] == "1"  # launch.env wins over the config
    assert env["SUNDIAL_TOKEN"] == "tok"
    assert env["SUNDIAL_IDEMPOTENCY_KEY"] == "run-7-task-3-attempt-1"
    assert env["FOO"] == "from-config"
    assert env["BAR"] == "launch"
    assert env["PATH"] == os.environ["PATH"]
    assert env["LANG"] == "C.UTF-8"
    assert not {"DATABASE_URL", "SECRET_KEY", "AWS_SECRET_ACCESS_KEY"} & env.keys()
    assert not any(name.startswith("AWS_") for name in env)


def test_cwd_and_stdin(executor, exits, tmp_path):
    sub = executor.submit(make_launch(shell="pwd; cat; echo end", cwd=str(tmp_path)))
    exits.wait_for(sub.external_id)
    assert read_all(executor, sub.log_ref) == [str(tmp_path), "end"]  # stdin is /dev/null


def test_exit_codes_and_timing(executor, exits):
    ok = executor.submit(make_launch(shell="sleep 0.2"))
    bad = executor.submit(make_launch(shell="exit 3"))
    bad_status = exits.wait_for(bad.external_id)
    ok_status = exits.wait_for(ok.external_id)
    assert (ok_status.state, ok_status.exit_code) == (State.SUCCEEDED, 0)
    assert (bad_status.state, bad_status.exit_code) == (State.FAILED, 3)
    for status in (ok_status, bad_status):
        assert status.started_at.tzinfo is UTC and status.ended_at.tzinfo is UTC
        assert status.started_at <= status.ended_at
    assert ok_status.ended_at - ok_status.started_at >= timedelta(seconds=0.2)
    assert ok_status.ended_at - ok_status.started_at < timedelta(seconds=3)
    assert executor.live_ids() == []


def test_stdout_and_stderr_share_one_log(executor, exits):
    sub = executor.submit(make_launch(shell="echo out; echo err >&2; echo out2"))
    exits.wait_for(sub.external_id)
    assert read_all(executor, sub.log_ref) == ["out", "err", "out2"]


def test_unfinished_last_line_is_ended_on_exit(executor, exits):
    sub = executor.submit(make_launch(shell="printf 'done'"))
    exits.wait_for(sub.external_id)
    assert read_all(executor, sub.log_ref) == ["done"]


def test_simultaneous_exits_arrive_in_one_batch(make_executor):
    # The first on_exit call blocks; meanwhile 20 children exit. When it returns, the
    # watcher must deliver all 20 in its next wake-up, not one call per child.
    release = threading.Event()
    entered = threading.Event()
    batches = []

    def on_exit(batch):
        batches.append(batch)
        entered.set()
        release.wait(5)

    executor = make_executor(on_exit)
    executor.submit(make_launch(command=["true"]))
    assert entered.wait(5)
    subs = [executor.submit(make_launch(command=["true"])) for _ in range(20)]
    wait_until(lambda: not any(is_alive(pid_of(s.external_id)) for s in subs))
    release.set()
    wait_until(lambda: sum(len(b) for b in batches) == 21)
    assert len(batches) == 2
    assert {eid for eid, _ in batches[1]} == {s.external_id for s in subs}


def test_executable_not_found_is_permanent(executor):
    for command in (["/nonexistent/prog"], ["no-such-program-sundial"]):
        launch = make_launch(command=command)
        with pytest.raises(ExecutorError) as info:
            executor.submit(launch)
        assert info.value.permanent
        assert "No such file or directory" in info.value.message
        log = executor.log_dir / f"{launch.idempotency_key}.log"
        assert command[0] in log.read_text()
        assert "No such file or directory" in log.read_text()
    assert executor.live_ids() == []


def test_permission_denied_is_permanent(executor, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(ExecutorError) as info:
        executor.submit(make_launch(command=[str(script)]))
    assert info.value.permanent
    assert "Permission denied" in info.value.message


def test_missing_cwd_is_permanent(executor, tmp_path):
    with pytest.raises(ExecutorError) as info:
        executor.submit(make_launch(command=["true"], cwd=str(tmp_path / "nope")))
    assert info.value.permanent


@pytest.mark.parametrize("key", ["../escape", "a/b", "", ".hidden", "sp ace", "x" * 300])
def test_unsafe_idempotency_key_is_rejected(executor, key):
    with pytest.raises(ExecutorError) as info:
        executor.submit(make_launch(key=key, command=["true"]) if key else _empty_key_launch())
    assert info.value.permanent
    assert not list(executor.log_dir.parent.glob("**/escape*"))


def _empty_key_launch():
    launch = make_launch(command=["true"])
    return dataclasses.replace(launch, idempotency_key="", env={})


def test_invalid_config_is_permanent(executor):
    with pytest.raises(ExecutorError) as info:
        executor.submit(make_launch(command=["true"], shell="true"))
    assert info.value.permanent
    assert "exactly one of command or shell" in info.value.message


def test_same_key_twice_starts_one_process(executor, exits):
    launch = make_launch(command=["sleep", "5"])
    first = executor.submit(launch)
    assert executor.submit(launch) == first
    assert executor.live_ids() == [first.external_id]


def test_watcher_survives_failing_callbacks(make_executor, caplog):
    seen = []

    def on_exit(batch):
        seen.extend(batch)
        raise RuntimeError("database is down")

    executor = make_executor(on_exit)
    with caplog.at_level(logging.ERROR, logger="executors.local.executor"):
        first = executor.submit(make_launch(command=["true"]))
        wait_until(lambda: len(seen) == 1)
        second = executor.submit(make_launch(command=["false"]))
        wait_until(lambda: len(seen) == 2)
    assert [eid for eid, _ in seen] == [first.external_id, second.external_id]
    assert "database is down" in caplog.text
    assert executor._thread.is_alive()
    # The exit the callback failed to record can still be asked for.
    assert executor.statuses([second.external_id])[second.external_id].exit_code == 1


def test_close_stops_the_watcher(tmp_path):
    executor = LocalExecutor(tmp_path, lambda batch: None)
    executor.close()  # never started: nothing to do
    executor = LocalExecutor(tmp_path, lambda batch: None)
    sub = executor.submit(make_launch(command=["true"]))
    wait_until(lambda: not executor.live_ids())
    thread = executor._thread
    executor.close()
    assert not thread.is_alive()
    with pytest.raises(ExecutorError):
        executor.submit(make_launch(command=["true"]))
    assert sub.log_ref
