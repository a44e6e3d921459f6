"""The admin is Sundial's: branded, its own models first, users under accounts, and the
scheduler's housekeeping tables in one section only superusers see."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs.models import User

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")


def sections(response) -> list[tuple[str, list[str]]]:
    return [
        (app["name"], [model["object_name"] for model in app["models"]])
        for app in response.context["app_list"]
    ]


def test_the_index_is_branded_and_puts_processes_first(admin_client):
    response = admin_client.get(INDEX)
    html = response.content.decode()
    assert '<a href="/admin/">Sundial</a>' in html and "<title>" in html
    assert "Django administration" not in html and "Sundial</title>" in html
    assert sections(response) == [
        ("Processes and runs", ["ProcessDefinition", "ProcessRun"]),
        ("Notifications", ["Alert", "Delivery", "Subscription"]),
        ("Accounts", ["Group", "User"]),
        (
            "Housekeeping",
            [
                "ClockedSchedule",
                "CrontabSchedule",
                "IntervalSchedule",
                "PeriodicTask",
                "SolarSchedule",
            ],
        ),
    ]


def test_users_are_under_accounts_on_the_app_pages_too(admin_client):
    jobs = admin_client.get(reverse("admin:app_list", args=["jobs"]))
    assert sections(jobs) == [("Processes and runs", ["ProcessDefinition", "ProcessRun"])]
    accounts = admin_client.get(reverse("admin:app_list", args=["auth"]))
    assert sections(accounts) == [("Accounts", ["Group", "User"])]


def crumbs(client, url: str) -> list[str]:
    html = client.get(url).content.decode()
    (trail,) = re.findall(r'<div class="breadcrumbs">(.*?)</div>', html, flags=re.S)
    return [part.strip() for part in re.sub(r"<[^>]+>", "", trail).split("&rsaquo;")]


def test_every_user_page_says_accounts_in_its_crumbs(admin_client, admin_user):
    pages = {
        "admin:jobs_user_changelist": [],
        "admin:jobs_user_add": [],
        "admin:jobs_user_change": [admin_user.pk],
        "admin:jobs_user_history": [admin_user.pk],
        "admin:jobs_user_delete": [admin_user.pk],
        "admin:auth_user_password_change": [admin_user.pk],
    }
    trails = {name: crumbs(admin_client, reverse(name, args=args)) for name, args in pages.items()}
    assert trails == {
        "admin:jobs_user_changelist": ["Home", "Accounts", "Users"],
        "admin:jobs_user_add": ["Home", "Accounts", "Users", "Add user"],
        "admin:jobs_user_change": ["Home", "Accounts", "Users", "admin"],
        "admin:jobs_user_history": ["Home", "Accounts", "Users", "admin", "History"],
        "admin:jobs_user_delete": ["Home", "Accounts", "Users", "admin", "Delete"],
        "admin:auth_user_password_change": ["Home", "Accounts", "Users", "admin", "Password"],
    }


@pytest.fixture
def staff_client(client):
    """A staff member who may do everything to processes and periodic tasks, but is no
    superuser."""
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["jobs", "django_celery_beat"])
    )
    client.force_login(staff)
    return client


def test_housekeeping_is_for_superusers_only(staff_client):
    names = [name for name, _ in sections(staff_client.get(INDEX))]
    assert names == ["Processes and runs", "Accounts"]
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    assert staff_client.get(url).status_code == 403
    assert staff_client.get(reverse("admin:jobs_processrun_changelist")).status_code == 200
