"""The console of `make run` shows what a person needs, not a line per stylesheet or icon."""

import os
import signal
import urllib.error
import urllib.request

import pytest

from tests.commands.test_make_run import _start


def test_static_files_and_the_icon_leave_no_line_but_errors_do(tmp_path):
    proc, _, _, site = _start(tmp_path)
    try:
        for path in ("/static/sundial.css", "/static/favicon.svg", "/favicon.ico"):
            with urllib.request.urlopen(site + path) as answer:  # follows the icon's redirect
                assert answer.status == 200, path
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(site + "/static/missing.css")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert "Sundial is running" in output
    for quiet in ("sundial.css", "favicon", "/admin/login/", "Starting development server"):
        assert quiet not in output, f"{quiet!r} in:\n{output}"
    assert "missing.css" in output, "a 404 is still shown"
    assert proc.returncode == 0, output
