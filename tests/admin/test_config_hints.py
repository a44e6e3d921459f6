"""An empty or misspelt executor config is answered with what is missing or meant."""

import pytest
from django.urls import reverse

from executors.config import ConfigError, validate_config
from tests.admin.posting import error_messages, process_form

pytestmark = pytest.mark.django_db


def save(client, config: str):
    data = process_form([{"name": "only", "config": config}])
    return client.post(reverse("admin:jobs_processdefinition_add"), data)


@pytest.mark.parametrize("config", ["{}", "", "  "])
def test_an_empty_config_says_what_is_missing(admin_client, config):
    assert error_messages(save(admin_client, config)) == [
        "exactly one of command or shell is required"
    ]


def test_a_misspelt_key_is_told_the_name_it_was_meant_to_have(admin_client):
    assert error_messages(save(admin_client, '{"shel": "true"}')) == [
        "shel: Extra inputs are not permitted (did you mean 'shell'?)"
    ]


def test_hints_come_from_the_schema_where_the_key_is():
    with pytest.raises(ConfigError) as nested:
        validate_config(
            "batch", {"image": "x", "sidecars": [{"name": "s", "image": "y", "evn": {}}]}
        )
    assert str(nested.value) == (
        "sidecars.0.evn: Extra inputs are not permitted (did you mean 'env'?)"
    )
    with pytest.raises(ConfigError) as unknown:
        validate_config("local", {"shell": "true", "xyzzy": 1})
    assert str(unknown.value) == "xyzzy: Extra inputs are not permitted", "no far-fetched guess"
