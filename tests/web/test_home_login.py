"""The home page is for signed-in users only."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next=/"


def test_signed_in_users_see_it(admin_client):
    assert admin_client.get(reverse("home")).status_code == 200
