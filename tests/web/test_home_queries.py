"""The home page costs the same number of queries for one process or many."""

import pytest
from django.urls import reverse

from jobs.models import ProcessRun
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def make(name):
    process = make_process(name)
    for status in ("failed", "succeeded"):
        ProcessRun.objects.create(definition=process, snapshot={}, trigger="manual", status=status)


def test_constant_queries(admin_client, django_assert_max_num_queries):
    make("p0")
    with django_assert_max_num_queries(4) as one:
        admin_client.get(reverse("home"))
    for i in range(1, 10):
        make(f"p{i}")
    with django_assert_max_num_queries(len(one)):
        html = admin_client.get(reverse("home")).content.decode()
    assert html.count("badge-succeeded") == 10
