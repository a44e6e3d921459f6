"""The process form rejects schedules it could not run, saying what is wrong."""

import pytest
from django.urls import reverse

from jobs.models import ProcessDefinition
from tests.admin.posting import error_messages, process_form

pytestmark = pytest.mark.django_db


def save(client, **fields):
    """Add a one-task process with these process fields."""
    return client.post(
        reverse("admin:jobs_processdefinition_add"), process_form([{"name": "only"}], **fields)
    )


def test_bad_cron_is_rejected_with_the_field_named(admin_client):
    response = save(admin_client, schedule_kind="cron", cron="0 25 * * *")
    assert error_messages(response) == ["invalid cron expression '0 25 * * *': Bad hour"]
    assert not ProcessDefinition.objects.exists()


def test_cron_with_the_wrong_number_of_fields(admin_client):
    response = save(admin_client, schedule_kind="cron", cron="* * *")
    assert error_messages(response) == [
        "cron expression must have 5 fields (minute hour day month weekday), got 3"
    ]


def test_a_cron_schedule_needs_an_expression(admin_client):
    response = save(admin_client, schedule_kind="cron", cron="")
    assert error_messages(response) == ["a cron schedule needs a cron expression"]


def test_cron_text_is_ignored_unless_the_schedule_is_cron(admin_client):
    assert save(admin_client, schedule_kind="none", cron="nonsense").status_code == 302
    assert ProcessDefinition.objects.get().next_fire_at is None


def test_unknown_time_zone_suggests_the_close_one(admin_client):
    response = save(admin_client, timezone="Europe/Berln")
    assert error_messages(response) == [
        "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"
    ]


def test_a_continuous_schedule_needs_a_minimum_gap(admin_client):
    response = save(admin_client, schedule_kind="continuous", min_gap_seconds="")
    assert error_messages(response) == ["a continuous schedule needs a minimum gap between runs"]


def test_the_gap_may_be_left_empty_for_other_schedules(admin_client):
    assert save(admin_client, min_gap_seconds="").status_code == 302
    assert ProcessDefinition.objects.get().min_gap_seconds == 60
