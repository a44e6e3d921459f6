"""Settings for the test suite.

The real PostgreSQL and Redis are used when reachable (CI sets DATABASE_URL and
CELERY_BROKER_URL explicitly, and SUNDIAL_REQUIRE_SERVICES=1 turns their absence into an
error); elsewhere the suite falls back to SQLite and Celery's in-memory broker.
"""

import os
import socket

from django.core.exceptions import ImproperlyConfigured


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


if "DATABASE_URL" not in os.environ and _reachable("127.0.0.1", 5432):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/test"
if "CELERY_BROKER_URL" not in os.environ:
    os.environ["CELERY_BROKER_URL"] = (
        "redis://127.0.0.1:6379/15" if _reachable("127.0.0.1", 6379) else "memory://"
    )
if os.environ.get("SUNDIAL_REQUIRE_SERVICES") == "1" and (
    not os.environ.get("DATABASE_URL", "").startswith("postgres")
    or not os.environ["CELERY_BROKER_URL"].startswith("redis")
):
    raise ImproperlyConfigured("SUNDIAL_REQUIRE_SERVICES=1 but PostgreSQL or Redis is not set")

# No AWS from the machine: the suite's AWS is moto server on this machine, set up by the tests
# that use it (tests/aws/, which also hands its address to the workers it starts); a
# developer's own profile or region must not leak in, nor an instance metadata lookup slow
# the suite down.
if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"):
    for _var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(_var, None)
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault("SUNDIAL_VAR_DIR", f"/tmp/sundial-test-{os.getuid()}/{_worker}")

from sundial_site.settings import *  # noqa: E402, F403
from sundial_site.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not Django's in-memory default: the local executor's watcher thread
    # writes through its own connection, as it does in production.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
# Parallel test processes share one Redis: each gets its own queue.
CELERY_TASK_DEFAULT_QUEUE = f"sundial-test-{_worker}"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SUNDIAL_API_URL = "http://testserver"
