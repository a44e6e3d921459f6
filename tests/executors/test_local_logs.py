from __future__ import annotations

import pytest

from executors.base import ExecutorError
from executors.local.executor import LOG_CHUNK

from .conftest import make_launch


@pytest.fixture
def log(executor):
    executor.log_dir.mkdir(parents=True, exist_ok=True)
    return executor.log_dir / "job.log"


def _read_everything(executor, log_ref, cursor=None):
    pieces = []
    while True:
        chunk = executor.read_logs(log_ref, cursor)
        if not chunk.lines:
            return pieces, chunk.next_cursor
        assert sum(len(line.encode()) for line in chunk.lines) <= LOG_CHUNK
        pieces.extend(chunk.lines)
        cursor = chunk.next_cursor


def test_complete_lines_and_continuation(executor, log):
    log.write_bytes(b"one\r\ntwo\n\nthr")
    chunk = executor.read_logs(str(log), None)
    assert chunk.lines == ("one", "two", "")
    assert chunk.next_cursor == "10"
    assert executor.read_logs(str(log), chunk.next_cursor).lines == ()  # "thr" is unfinished
    with log.open("ab") as f:
        f.write(b"ee\nfour\n")
    chunk = executor.read_logs(str(log), chunk.next_cursor)
    assert chunk.lines == ("three", "four")
    assert executor.read_logs(str(log), chunk.next_cursor).lines == ()


def test_non_utf8_bytes_never_raise(executor, exits):
    sub = executor.submit(make_launch(shell=r"printf 'a\377\376b\n'; printf 'ok\n'"))
    exits.wait_for(sub.external_id)
    assert executor.read_logs(sub.log_ref, None).lines == ("a\ufffd\ufffdb", "ok")


def test_a_huge_line_comes_in_pieces(executor, log):
    log.write_bytes(b"x" * 1_000_000)
    pieces, cursor = _read_everything(executor, str(log))
    assert len(pieces) > 10
    assert all(0 < len(p) <= LOG_CHUNK for p in pieces)
    with log.open("ab") as f:
        f.write(b"\nnext\n")
    rest, _ = _read_everything(executor, str(log), cursor)
    assert "".join(pieces + rest[:-1]) == "x" * 1_000_000
    assert rest[-1] == "next"


@pytest.mark.parametrize("length", range(LOG_CHUNK - 3, LOG_CHUNK + 3))
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_no_phantom_empty_line_around_the_chunk_size(executor, log, length, ending):
    log.write_bytes(b"y" * length + ending + b"z\n")
    pieces, _ = _read_everything(executor, str(log))
    assert "".join(pieces[:-1]) == "y" * length
    assert "" not in pieces and pieces[-1] == "z"


def test_pieces_do_not_split_utf8_characters(executor, log):
    line = "é€😀" * 20_000  # 2-, 3- and 4-byte sequences
    log.write_bytes(line.encode() + b"\n")
    pieces, _ = _read_everything(executor, str(log))
    assert "\ufffd" not in "".join(pieces)
    assert "".join(pieces) == line


def test_missing_file_keeps_the_cursor(executor):
    ref = str(executor.log_dir / "never-written.log")
    assert executor.read_logs(ref, "42").lines == ()
    assert executor.read_logs(ref, "42").next_cursor == "42"
    assert executor.read_logs(ref, None).next_cursor == "0"


def test_cursor_past_the_end_is_empty(executor, log):
    log.write_bytes(b"a\n")
    assert executor.read_logs(str(log), "100").lines == ()


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", " 3"])
def test_invalid_cursor_is_permanent(executor, log, cursor):
    log.write_bytes(b"a\n")
    with pytest.raises(ExecutorError) as info:
        executor.read_logs(str(log), cursor)
    assert info.value.permanent


def test_log_outside_the_log_dir_is_refused(executor, tmp_path):
    with pytest.raises(ExecutorError) as info:
        executor.read_logs("/etc/passwd", None)
    assert info.value.permanent
