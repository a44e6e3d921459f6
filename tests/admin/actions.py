"""Apply an admin changelist action the way the browser does, and read what it said."""

from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils.html import strip_tags


def apply_action(client, model: str, action: str, *objects) -> list[str]:
    """POST ``action`` on ``objects`` from the changelist of ``jobs.<model>``; the messages."""
    response = client.post(
        reverse(f"admin:jobs_{model}_changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )
    assert response.redirect_chain, "the action was not accepted"
    # The list page the browser lands on shows (and so consumes) the messages; as read.
    return [strip_tags(str(message)) for message in response.context["messages"]]


def audit_trail(obj) -> list[tuple[str, str]]:
    """(username, change message) of the LogEntry rows about ``obj``, oldest first."""
    return [
        (entry.user.get_username(), entry.get_change_message())
        for entry in LogEntry.objects.filter(object_id=str(obj.pk)).order_by("id")
        if entry.content_type.model_class() is type(obj)
    ]
