"""A separate process publishing to the file-system broker (for tests/site/test_broker.py)."""

import json
import sys

from kombu import Connection, Exchange, Queue

if sys.argv[1] == "safe":
    import sundial_site.broker  # noqa: F401

options = json.loads(sys.argv[2])
first, step, count = map(int, sys.argv[3:6])
exchange = Exchange("jobs", type="direct")
queue = Queue("jobs", exchange, routing_key="jobs")
with Connection("filesystem://", transport_options=options) as conn:
    producer = conn.Producer(serializer="json")
    for n in range(first, count, step):
        producer.publish({"n": n, "padding": "x" * 4000}, exchange=exchange, routing_key="jobs",
                         declare=[queue])  # fmt: skip
