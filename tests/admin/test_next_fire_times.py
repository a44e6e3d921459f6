"""The change page previews the next five fire times in the process's time zone (UTC on
hover)."""

import re

import pytest
from django.urls import reverse

from tests.conftest import make_process

pytestmark = pytest.mark.django_db

# 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
BERLIN_NINE = re.compile(
    r'title="\d{4}-\d\d-\d\d (08:00:00 UTC">\S+ 09:00:00 CET|07:00:00 UTC">\S+ 09:00:00 CEST)<'
)


def page(client, process):
    return client.get(
        reverse("admin:jobs_processdefinition_change", args=[process.pk])
    ).content.decode()


def test_five_fire_times_in_local_time_and_utc(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
    html = page(admin_client, process)
    assert "Next fire times" in html
    assert len(BERLIN_NINE.findall(html)) == 5


def test_a_paused_process_says_nothing_fires(admin_client):
    process = make_process(
        "etl", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin", paused=True
    )
    html = page(admin_client, process)
    assert "Nothing fires while paused or archived. Once resumed:" in html
    assert len(BERLIN_NINE.findall(html)) == 5
