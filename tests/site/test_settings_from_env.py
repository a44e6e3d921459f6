"""Settings come from the environment; a bad value stops start-up with a message naming it.

Settings are read once per interpreter, so each start-up case runs a fresh one with an
environment this test controls (nothing inherited from the test run, e.g. DATABASE_URL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from sundial_site.env import env_bool, env_float, env_int, env_list, env_str

REPO = Path(__file__).resolve().parents[2]
SETUP = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='sundial_site.settings'; "
    "django.setup()"
)
# Printed by the child after a successful start-up.
SHOW = (
    "; import json; from django.conf import settings as s; print(json.dumps({"
    "'SECRET_KEY': s.SECRET_KEY, 'DEBUG': s.DEBUG, 'DATABASE': s.DATABASES['default'],"
    "'BROKER': s.CELERY_BROKER_URL, 'BROKER_OPTIONS': s.CELERY_BROKER_TRANSPORT_OPTIONS,"
    "'LOG_DIR': str(s.SUNDIAL_LOG_DIR)}, default=str))"
)


def start(env: dict[str, str], code: str = SETUP) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh interpreter with only ``env`` (plus PATH) set."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(env: dict[str, str]) -> dict:
    """The settings a fresh interpreter ends up with; fails the test if start-up fails."""
    child = start(env, SETUP + SHOW)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def refused(env: dict[str, str]) -> str:
    """The ImproperlyConfigured message start-up stopped with."""
    child = start(env)
    assert child.returncode != 0, f"start-up succeeded with {env}"
    prefix = "django.core.exceptions.ImproperlyConfigured: "
    messages = [line for line in child.stderr.splitlines() if line.startswith(prefix)]
    assert messages, child.stderr
    return messages[-1].removeprefix(prefix)


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


# ---- start-up refuses bad values ----


def test_an_unknown_database_scheme_names_database_url(var_dir):
    message = refused({"SUNDIAL_VAR_DIR": str(var_dir), "DATABASE_URL": "nonsense://x"})
    assert message.startswith("DATABASE_URL is not a valid database URL")
    assert "nonsense" in message


def test_debug_must_be_a_boolean(var_dir):
    message = refused({"SUNDIAL_VAR_DIR": str(var_dir), "DEBUG": "maybe"})
    assert message == "DEBUG='maybe' is not a boolean (use 1/0, true/false, yes/no)"


def test_heartbeat_interval_must_be_a_number(var_dir):
    message = refused({"SUNDIAL_VAR_DIR": str(var_dir), "SUNDIAL_HEARTBEAT_INTERVAL_S": "abc"})
    assert message == "SUNDIAL_HEARTBEAT_INTERVAL_S='abc' is not a number"


def test_the_pagerduty_events_url_must_be_https(var_dir):
    message = refused(
        {"SUNDIAL_VAR_DIR": str(var_dir), "SUNDIAL_PAGERDUTY_EVENTS_URL": "http://pd.local"}
    )
    assert message == (
        "SUNDIAL_PAGERDUTY_EVENTS_URL must be an https:// URL, not 'http://pd.local'"
    )


def test_lost_after_must_cover_three_heartbeats(var_dir):
    message = refused(
        {
            "SUNDIAL_VAR_DIR": str(var_dir),
            "SUNDIAL_HEARTBEAT_INTERVAL_S": "5",
            "SUNDIAL_LOST_AFTER_S": "14",
        }
    )
    assert "SUNDIAL_LOST_AFTER_S must be at least three heartbeat intervals" in message
    assert "15s" in message


def test_lost_after_of_exactly_three_heartbeats_is_accepted(var_dir):
    started(
        {
            "SUNDIAL_VAR_DIR": str(var_dir),
            "SUNDIAL_HEARTBEAT_INTERVAL_S": "5",
            "SUNDIAL_LOST_AFTER_S": "15",
        }
    )


def test_a_required_secret_key_must_be_set(var_dir):
    message = refused({"SUNDIAL_VAR_DIR": str(var_dir), "SUNDIAL_REQUIRE_SECRET_KEY": "1"})
    assert message == "SECRET_KEY is not set"


def test_debug_does_not_waive_a_required_secret_key(var_dir):
    env = {"SUNDIAL_VAR_DIR": str(var_dir), "SUNDIAL_REQUIRE_SECRET_KEY": "1", "DEBUG": "1"}
    assert refused(env) == "SECRET_KEY is not set"


def test_a_missing_secret_key_file_is_named(var_dir, tmp_path):
    missing = tmp_path / "no-such-secret"
    message = refused({"SUNDIAL_VAR_DIR": str(var_dir), "SECRET_KEY_FILE": str(missing)})
    assert message.startswith(f"SECRET_KEY_FILE={str(missing)!r} cannot be read")


# ---- start-up with good values ----


def test_secret_key_file_is_read_and_stripped(var_dir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-a-file\n")
    settings = started(
        {
            "SUNDIAL_VAR_DIR": str(var_dir),
            "SECRET_KEY_FILE": str(secret),
            "SECRET_KEY": "ignored-when-the-file-is-set",
            "SUNDIAL_REQUIRE_SECRET_KEY": "1",
        }
    )
    assert settings["SECRET_KEY"] == "s3cret-from-a-file"


def test_defaults_are_sqlite_and_the_filesystem_broker_under_the_var_dir(var_dir):
    settings = started({"SUNDIAL_VAR_DIR": str(var_dir)})
    assert settings["DATABASE"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["DATABASE"]["NAME"] == str(var_dir / "sundial.sqlite3")
    assert settings["BROKER"] == "filesystem://"
    assert settings["BROKER_OPTIONS"]["data_folder_in"] == str(var_dir / "broker")
    assert settings["LOG_DIR"] == str(var_dir / "logs")
    assert settings["DEBUG"] is False
    assert settings["SECRET_KEY"], "the embedded default starts without a key"


def test_with_no_variables_at_all_the_var_dir_is_in_the_project():
    settings = started({})
    assert settings["DATABASE"]["NAME"] == str(REPO / "var" / "sundial.sqlite3")
    assert settings["BROKER"] == "filesystem://"


# ---- the helpers, in this interpreter ----


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("TRUE", True), (" yes ", True), ("on", True)],
        *[("0", False), ("False", False), ("no", False), ("off", False), ("", False)],
    ],
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SUNDIAL_TEST_FLAG", raw)
    assert env_bool("SUNDIAL_TEST_FLAG", not expected) is expected


def test_env_bool_falls_back_to_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("SUNDIAL_TEST_FLAG", raising=False)
    assert env_bool("SUNDIAL_TEST_FLAG", True) is True
    assert env_bool("SUNDIAL_TEST_FLAG", False) is False


def test_env_bool_rejects_anything_else(monkeypatch):
    monkeypatch.setenv("SUNDIAL_TEST_FLAG", "2")
    with pytest.raises(ImproperlyConfigured, match="SUNDIAL_TEST_FLAG='2' is not a boolean"):
        env_bool("SUNDIAL_TEST_FLAG", False)


def test_env_int_parses_and_checks_the_minimum(monkeypatch):
    monkeypatch.delenv("SUNDIAL_TEST_INT", raising=False)
    assert env_int("SUNDIAL_TEST_INT", 7) == 7
    monkeypatch.setenv("SUNDIAL_TEST_INT", "42")
    assert env_int("SUNDIAL_TEST_INT", 7) == 42
    monkeypatch.setenv("SUNDIAL_TEST_INT", "-1")
    with pytest.raises(ImproperlyConfigured, match="SUNDIAL_TEST_INT='-1' must be at least 0"):
        env_int("SUNDIAL_TEST_INT", 7)
    assert env_int("SUNDIAL_TEST_INT", 7, minimum=-5) == -1


@pytest.mark.parametrize("raw", ["1.5", "abc", ""])
def test_env_int_rejects_what_is_not_a_whole_number(monkeypatch, raw):
    monkeypatch.setenv("SUNDIAL_TEST_INT", raw)
    with pytest.raises(ImproperlyConfigured, match="is not a whole number"):
        env_int("SUNDIAL_TEST_INT", 7)


def test_env_float_parses_and_checks_the_minimum(monkeypatch):
    monkeypatch.delenv("SUNDIAL_TEST_FLOAT", raising=False)
    assert env_float("SUNDIAL_TEST_FLOAT", 2.5) == 2.5
    monkeypatch.setenv("SUNDIAL_TEST_FLOAT", "0.25")
    assert env_float("SUNDIAL_TEST_FLOAT", 2.5) == 0.25
    monkeypatch.setenv("SUNDIAL_TEST_FLOAT", "0.05")
    with pytest.raises(ImproperlyConfigured, match=r"'0.05' must be at least 0.1"):
        env_float("SUNDIAL_TEST_FLOAT", 2.5, minimum=0.1)
    monkeypatch.setenv("SUNDIAL_TEST_FLOAT", "five")
    with pytest.raises(ImproperlyConfigured, match="SUNDIAL_TEST_FLOAT='five' is not a number"):
        env_float("SUNDIAL_TEST_FLOAT", 2.5)


def test_env_float_rejects_nan(monkeypatch):
    monkeypatch.setenv("SUNDIAL_TEST_FLOAT", "nan")
    with pytest.raises(ImproperlyConfigured, match="SUNDIAL_TEST_FLOAT"):
        env_float("SUNDIAL_TEST_FLOAT", 2.5, minimum=0.1)


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.delenv("SUNDIAL_TEST_LIST", raising=False)
    assert env_list("SUNDIAL_TEST_LIST", ["default"]) == ["default"]
    monkeypatch.setenv("SUNDIAL_TEST_LIST", " a.example , b.example,, ")
    assert env_list("SUNDIAL_TEST_LIST", ["default"]) == ["a.example", "b.example"]
    monkeypatch.setenv("SUNDIAL_TEST_LIST", "")
    assert env_list("SUNDIAL_TEST_LIST", ["default"]) == []


def test_env_str_prefers_the_file_variant(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("  from-file \n")
    monkeypatch.setenv("SUNDIAL_TEST_TOKEN", "from-env")
    assert env_str("SUNDIAL_TEST_TOKEN") == "from-env"
    monkeypatch.setenv("SUNDIAL_TEST_TOKEN_FILE", str(secret))
    assert env_str("SUNDIAL_TEST_TOKEN") == "from-file"
    secret.unlink()
    with pytest.raises(ImproperlyConfigured, match=r"SUNDIAL_TEST_TOKEN_FILE=.* cannot be read"):
        env_str("SUNDIAL_TEST_TOKEN")


def test_without_a_secret_key_each_installation_makes_its_own(tmp_path):
    first = started({"SUNDIAL_VAR_DIR": str(tmp_path / "one")})["SECRET_KEY"]
    again = started({"SUNDIAL_VAR_DIR": str(tmp_path / "one")})["SECRET_KEY"]
    other = started({"SUNDIAL_VAR_DIR": str(tmp_path / "two")})["SECRET_KEY"]
    assert first == again, "kept across restarts, so sessions survive them"
    assert first != other and len(first) >= 50
    assert (tmp_path / "one" / "secret_key").stat().st_mode & 0o777 == 0o600
