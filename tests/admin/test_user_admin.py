"""Users are managed with Django's own user admin."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_users_can_be_listed_and_added(admin_client):
    assert admin_client.get(reverse("admin:jobs_user_changelist")).status_code == 200
    response = admin_client.post(
        reverse("admin:jobs_user_add"),
        {
            "username": "ops",
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
