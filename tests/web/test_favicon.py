"""Every page links Sundial's icon, and a browser asking /favicon.ico is sent to it."""

import pytest
from django.templatetags.static import static
from django.urls import reverse

pytestmark = pytest.mark.django_db

ICON = f'<link rel="icon" href="{static("favicon.svg")}"'


@pytest.mark.parametrize("page", ["home", "admin:index", "admin:jobs_processrun_changelist"])
def test_pages_and_the_admin_link_the_icon(client, admin_user, page):
    client.force_login(admin_user)
    assert ICON in client.get(reverse(page)).content.decode()


def test_the_admin_login_links_the_icon(client):
    assert ICON in client.get(reverse("admin:login")).content.decode()


def test_favicon_ico_redirects_to_the_icon(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301
    assert answer["Location"] == static("favicon.svg")
