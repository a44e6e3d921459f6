"""The local executor: each attempt is a subprocess of the worker, in its own session.

One watcher thread per executor waits on every child through pidfds (Linux >= 5.3), reaps
them, reports exits in batches through ``on_exit``, kills whatever a finished job left in its
process group and enforces the SIGTERM -> SIGKILL grace of ``terminate``. It does nothing else,
so an exit is seen within moments however busy the code that records it is.

An external_id is ``host:pid:starttime``; starttime (field 22 of /proc/<pid>/stat) tells a
reused pid apart from our process, so a process that is not ours is never signalled.

A job's environment: only ``INHERITED_ENV`` (PATH, HOME, locale...) comes from the worker,
so its secrets (DATABASE_URL, SECRET_KEY, AWS_*, proxies...) never reach the job; then the
config's ``env``, then ``launch.env``, then ``SUNDIAL_IDEMPOTENCY_KEY`` (``find`` needs it).

``terminate`` also stops a job of another executor on this host (an orphan of a crashed
worker, say) with the default grace. Its end is reported through ``on_exit`` like a child's,
without an exit code (only a parent can read that): at once if it is gone already, else when
its pidfd says it has ended.

Limits: a grandchild that starts its own session (setsid, daemonising) leaves our process
group and survives the group kill; pids are only meaningful within one pid namespace, so
two containers with the same hostname must not share an executor's ids.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from executors.base import ExecutorError, Launch, LogChunk, State, Status, Submission
from executors.config import ConfigError, parse_config
from executors.local.config import LocalConfig

log = logging.getLogger(__name__)

# Looked up one by one: iterating os.environ costs more than the spawn itself.
INHERITED_ENV = (
    *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ", "LANG", "LANGUAGE"),
    *("LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME"),
)
KEY_VAR = "SUNDIAL_IDEMPOTENCY_KEY"
LOG_CHUNK = 64 * 1024
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # also the log file's name
# exec errors that no retry can fix; others (EAGAIN, ENOMEM...) may pass.
_PERMANENT_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOEXEC,
    errno.E2BIG,
    errno.ELOOP,
    errno.ENAMETOOLONG,
}
_DEFAULT_GRACE_S: float = LocalConfig.model_fields["kill_grace_s"].default
_RECENT_EXITS = 1024  # finished ids statuses() can still answer for


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    external_id: str
    key: str
    log_path: str
    pidfd: int
    grace_s: float
    started_at: datetime
    term_reason: str | None = None  # set once by terminate()
    kill_at: float | None = None  # monotonic time of the SIGKILL still due


@dataclass
class _Target:
    """A job of another executor (e.g. an orphan of a crashed worker) we were told to stop."""

    external_id: str
    pid: int
    pidfd: int
    kill_at: float | None
    reason: str


class LocalExecutor:
    kind = "local"

    def __init__(
        self,
        log_dir: Path,
        on_exit: Callable[[list[tuple[str, Status]]], None],
    ) -> None:
        self.log_dir = Path(log_dir)
        self.on_exit = on_exit
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._children: dict[str, _Child] = {}  # external_id -> live (unreaped) child
        self._by_key: dict[str, _Child] = {}
        self._targets: dict[str, _Target] = {}  # external_id -> foreign job being stopped
        self._new: list[_Child | _Target] = []  # pidfds not yet in the selector
        self._recent: OrderedDict[str, Status] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._wake_fd = -1
        self._closed = False

    # ---- Executor interface ----

    def submit(self, launch: Launch) -> Submission:
        key = launch.idempotency_key
        if not _KEY.fullmatch(key):
            raise ExecutorError(f"unsafe idempotency key {key!r}", permanent=True)
        try:
            config = parse_config("local", launch.config)
        except ConfigError as exc:
            raise ExecutorError(f"invalid local config: {exc}", permanent=True) from None
        assert isinstance(config, LocalConfig)
        with self._lock:
            if self._closed:
                raise ExecutorError("executor is closed")
            existing = self._by_key.get(key)
        if existing is not None:  # the same attempt submitted twice: one job
            return Submission(existing.external_id, existing.log_path)

        argv = config.argv()
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(config.env)
        env.update(launch.env)
        env[KEY_VAR] = key
        log_path = str(self.log_dir / f"{key}.log")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            try:
                log_fd = os.open(log_path, flags, 0o644)
            except FileNotFoundError:  # made on demand, so a removed log_dir comes back
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log_fd = os.open(log_path, flags, 0o644)
        except OSError as exc:
            raise ExecutorError(f"cannot open log file {log_path}: {exc}") from exc
        try:
            # No preexec_fn: it would make CPython fork instead of vfork (slow with a big heap).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=config.cwd,
                env=env,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            message = f"cannot start {argv!r}: {exc}"
            with contextlib.suppress(OSError):
                os.write(log_fd, f"sundial: {message}\n".encode(errors="replace"))
            permanent = isinstance(exc, ValueError) or exc.errno in _PERMANENT_ERRNOS
            raise ExecutorError(message, permanent=permanent) from exc
        finally:
            os.close(log_fd)  # the child holds its own copy

        # Nobody reaps the child before the watcher has its pidfd, so pid and stat are stable.
        started_at = datetime.now(UTC)
        external_id = f"{self.host}:{proc.pid}:{_starttime(proc.pid)}"
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError as exc:  # e.g. out of fds: a job nobody watches must not run on
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ExecutorError(f"cannot watch process {proc.pid}: {exc}") from exc
        child = _Child(
            proc=proc,
            external_id=external_id,
            key=key,
            log_path=log_path,
            pidfd=pidfd,
            grace_s=config.kill_grace_s,
            started_at=started_at,
        )
        with self._lock:
            self._children[external_id] = child
            self._by_key[key] = child
            self._new.append(child)
            self._ensure_watcher()
            self._wake()
        return Submission(external_id, log_path)

    def find(self, launch: Launch) -> Submission | None:
        """The session leader whose environment holds the launch's idempotency key, owned or
        not (crash recovery)."""
        idempotency_key = launch.idempotency_key
        with self._lock:
            child = self._by_key.get(idempotency_key)
        if child is not None:
            return Submission(child.external_id, child.log_path)
        if not _KEY.fullmatch(idempotency_key):
            return None
        needle = f"\0{KEY_VAR}={idempotency_key}\0".encode()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle not in b"\0" + f.read() + b"\0":
                        continue
                fields = stat_fields(pid)
            except OSError:  # not ours to read, or gone meanwhile
                continue
            # Children inherit the key; the job is the session leader we started.
            if fields is not None and int(fields[3]) == pid:
                log_path = str(self.log_dir / f"{idempotency_key}.log")
                return Submission(f"{self.host}:{pid}:{fields[19]}", log_path)
        return None

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        """RUNNING for live jobs; the final status of our recent exits; unknowable ids left out."""
        result: dict[str, Status] = {}
        for external_id in external_ids:
            with self._lock:
                child = self._children.get(external_id)
                recent = self._recent.get(external_id)
            if child is not None:
                result[external_id] = Status(State.RUNNING, started_at=child.started_at)
            elif recent is not None:
                result[external_id] = recent
            else:
                started = self._foreign_start(external_id)
                if started is not None:
                    result[external_id] = Status(State.RUNNING, started_at=started)
        return result

    def terminate(self, external_id: str, reason: str, grace_s: float | None = None) -> None:
        """SIGTERM the job's process group now, SIGKILL it after the grace. Idempotent.

        ``grace_s`` shortens the job's own grace (a stopping worker cannot wait an hour). A
        job of another executor on this host (an orphan of a crashed worker, say) gets the
        same treatment with the default grace, since its config is unknown here; it is only
        signalled while /proc shows the very process the id names.
        """
        host, pid, _ = _parse_id(external_id)
        with self._lock:
            child = self._children.get(external_id)
            if child is not None:
                grace = child.grace_s if grace_s is None else min(grace_s, child.grace_s)
                kill_at = time.monotonic() + grace
                if child.term_reason is None:
                    child.term_reason = reason or "terminated"
                    child.kill_at = kill_at
                    _killpg(pid, signal.SIGTERM)
                elif child.kill_at is not None and kill_at < child.kill_at:
                    # A second call never restarts the grace, but may shorten it: a stopping
                    # worker cannot wait out the hour a killed task was given.
                    child.kill_at = kill_at
                self._wake()
                return
            if external_id in self._recent or external_id in self._targets:
                return
        if host != self.host:
            raise ExecutorError(f"process runs on host {host}")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._call(self.on_exit, [_gone(external_id, reason)])
            return
        # Checked after pidfd_open, so the pidfd pins the very process that passed the check.
        if self._foreign_start(external_id) is None:
            os.close(pidfd)
            self._call(self.on_exit, [_gone(external_id, reason)])
            return
        # The leader is alive, so its pgid cannot have been reused.
        _killpg(pid, signal.SIGTERM)
        target = _Target(
            external_id, pid, pidfd, time.monotonic() + _DEFAULT_GRACE_S, reason or "terminated"
        )
        with self._lock:
            if self._closed or external_id in self._targets:
                os.close(pidfd)
                return
            self._targets[external_id] = target
            self._new.append(target)
            self._ensure_watcher()
            self._wake()

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        """Complete lines from byte offset ``cursor``; at most LOG_CHUNK bytes per call.

        A line longer than that comes in pieces, so a huge line cannot stall the reader.
        """
        if cursor is None:
            offset = 0
        elif cursor.isascii() and cursor.isdigit():
            offset = int(cursor)
        else:
            raise ExecutorError(f"invalid log cursor {cursor!r}", permanent=True)
        path = self.log_path(log_ref)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(LOG_CHUNK)
        except FileNotFoundError:
            return LogChunk((), str(offset))
        except OSError as exc:
            raise ExecutorError(f"cannot read log {log_ref}: {exc}") from exc

        end = data.rfind(b"\n")
        if end >= 0:
            consumed = end + 1
            raw_lines = [line.removesuffix(b"\r") for line in data[:end].split(b"\n")]
        elif len(data) == LOG_CHUNK:
            # A piece of a long line. Leave at least one byte of content besides a final
            # "\r" for the rest, so "\r\n" never comes back as a phantom "" line, and do not
            # cut a UTF-8 sequence in two.
            limit = LOG_CHUNK - (2 if data.endswith(b"\r") else 1)
            consumed = _utf8_boundary(data[:limit])
            piece = data[:consumed].decode("utf-8", errors="replace")
            return LogChunk((piece,), str(offset + consumed), partial=True)
        else:
            return LogChunk((), str(offset))  # an unfinished line: wait for its end
        lines = tuple(line.decode("utf-8", errors="replace") for line in raw_lines)
        return LogChunk(lines, str(offset + consumed))

    def log_path(self, log_ref: str) -> Path:
        """The file of a log this executor wrote; its cursors are byte offsets into it."""
        path = Path(log_ref)
        if path.parent.resolve() != self.log_dir.resolve():
            raise ExecutorError(f"log {log_ref} is not in {self.log_dir}", permanent=True)
        return path

    # ---- extras ----

    def live_ids(self) -> list[str]:
        with self._lock:
            return list(self._children)

    def runs_here(self, external_id: str) -> bool:
        """Whether the id names a process on this host (ours or not, alive or not)."""
        try:
            return _parse_id(external_id)[0] == self.host
        except ExecutorError:
            return False

    def close(self) -> None:
        """Stop the watcher. Running jobs are left alone (a new executor can find() them)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake()
        if thread is not None:
            thread.join()
            with self._lock:
                os.close(self._wake_fd)
                self._wake_fd = -1
                for item in self._watched():
                    os.close(item.pidfd)

    # ---- the watcher ----

    def _watched(self) -> list[_Child | _Target]:  # called with the lock held
        return [*self._children.values(), *self._targets.values()]

    def _ensure_watcher(self) -> None:  # called with the lock held
        if self._thread is None:
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._thread = threading.Thread(
                target=self._watch, name="sundial-local-watcher", daemon=True
            )
            self._thread.start()

    def _wake(self) -> None:  # called with the lock held, so close() cannot race it
        if self._wake_fd >= 0:
            os.eventfd_write(self._wake_fd, 1)

    def _watch(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_fd, selectors.EVENT_READ, None)
        try:
            while True:
                try:
                    with self._lock:
                        if self._closed:
                            return
                        # Registered here, not in submit(): the selector is this thread's alone.
                        for item in self._new:
                            sel.register(item.pidfd, selectors.EVENT_READ, item)
                        self._new.clear()
                        deadlines = [
                            item.kill_at for item in self._watched() if item.kill_at is not None
                        ]
                    timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                    ended = []
                    for sel_key, _ in sel.select(timeout):
                        if sel_key.data is None:
                            with contextlib.suppress(BlockingIOError):
                                os.eventfd_read(self._wake_fd)
                        else:
                            sel.unregister(sel_key.fileobj)
                            if isinstance(sel_key.data, _Child):
                                ended.append(self._reap(sel_key.data))
                            else:
                                ended.append(self._forget_target(sel_key.data))
                    if ended:
                        self._call(self.on_exit, ended)
                    self._enforce_grace()
                except Exception:  # the watcher must outlive any bug
                    log.exception("local executor watcher failed; going on")
                    time.sleep(0.1)
        finally:
            sel.close()

    def _reap(self, child: _Child) -> tuple[str, Status]:
        pid = child.proc.pid
        with self._lock:
            # Before the reap the leader is a zombie holding its pid, so this group kill
            # cannot hit a reused pid; it takes down whatever the job left running.
            _killpg(pid, signal.SIGKILL)
            code = child.proc.wait()
            os.close(child.pidfd)
            del self._children[child.external_id]
            if self._by_key.get(child.key) is child:  # two racing submits of one key
                del self._by_key[child.key]
        ended_at = datetime.now(UTC)
        _end_last_line(child.log_path)
        reason = child.term_reason if child.term_reason is not None else _signal_reason(code)
        status = Status(
            State.SUCCEEDED if code == 0 else State.FAILED,
            exit_code=code,
            reason=reason,
            started_at=child.started_at,
            ended_at=ended_at,
        )
        with self._lock:
            self._recent[child.external_id] = status
            while len(self._recent) > _RECENT_EXITS:
                self._recent.popitem(last=False)
        return child.external_id, status

    def _forget_target(self, target: _Target) -> tuple[str, Status]:
        # Its leader is gone; kill what it left in its group, as for our own jobs. The leader
        # may be reaped already, but the pgid stays reserved while any member lives (reuse
        # of an empty group's number within these microseconds needs a pid wrap-around).
        _killpg(target.pid, signal.SIGKILL)
        with self._lock:
            os.close(target.pidfd)
            del self._targets[target.external_id]
        return _gone(target.external_id, target.reason)

    def _enforce_grace(self) -> None:
        now = time.monotonic()
        with self._lock:
            for item in self._watched():
                if item.kill_at is not None and item.kill_at <= now:
                    item.kill_at = None
                    pid = item.proc.pid if isinstance(item, _Child) else item.pid
                    # Ours are unreaped; a target's pidfd was not readable at this wake-up.
                    _killpg(pid, signal.SIGKILL)

    @staticmethod
    def _call(callback: Callable[[list], None], arg: list) -> None:
        try:
            callback(arg)
        except Exception:
            log.exception("local executor callback %r failed", callback)

    def _foreign_start(self, external_id: str) -> datetime | None:
        """When the job started, if it is on this host and alive; None otherwise."""
        try:
            host, pid, starttime = _parse_id(external_id)
        except ExecutorError:
            return None
        if host != self.host:
            return None
        fields = stat_fields(pid)
        if fields is None or fields[19] != starttime or fields[0] in "ZX":
            return None
        ticks = int(starttime) / os.sysconf("SC_CLK_TCK")
        return datetime.fromtimestamp(_boot_time() + ticks, UTC)


# ---- /proc and signal helpers ----


def _parse_id(external_id: str) -> tuple[str, int, str]:
    host, _, rest = external_id.partition(":")
    pid, _, starttime = rest.partition(":")
    if not (host and pid.isdigit() and starttime.isdigit()):
        raise ExecutorError(f"not a local external_id: {external_id!r}", permanent=True)
    return host, int(pid), starttime


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on: index i is field i + 3. None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses; it ends at the last ")".
    return stat[stat.rindex(b")") + 2 :].decode().split()


def _starttime(pid: int) -> str:
    fields = stat_fields(pid)
    assert fields is not None, "an unreaped child always has a stat"
    return fields[19]


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def _gone(external_id: str, reason: str) -> tuple[str, Status]:
    """How a stopped job of another executor ended, as far as a non-parent can tell."""
    return external_id, Status(State.FAILED, reason=reason, ended_at=datetime.now(UTC))


def _signal_reason(code: int) -> str:
    if code >= 0:
        return ""
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _utf8_boundary(data: bytes) -> int:
    """len(data) without a trailing incomplete UTF-8 sequence (never less than 1)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # continuation byte: look further back for the lead
            continue
        need = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        return len(data) - back if back < need and back < len(data) else len(data)
    return len(data)


def _end_last_line(log_path: str) -> None:
    """Terminate a job's unfinished last line: read_logs returns complete lines only."""
    try:
        with open(log_path, "rb+") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    except OSError:
        log.warning("cannot finish the last line of %s", log_path, exc_info=True)
