"""Beat's periodic housekeeping, stored with django-celery-beat so a person can change its
intervals in the admin: the migrations of each app that has some add theirs through this."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Periodic(NamedTuple):
    name: str  # as listed in the admin
    task: str
    every_s: int
    expire_s: int  # a late tick is useless: the next one comes


Operation = Callable[[Any, Any], None]


def schedule(entries: Sequence[Periodic]) -> tuple[Operation, Operation]:
    """The forward and backward functions of a RunPython that adds ``entries``."""

    def create(apps: Any, schema_editor: Any) -> None:
        interval = apps.get_model("django_celery_beat", "IntervalSchedule")
        periodic = apps.get_model("django_celery_beat", "PeriodicTask")
        for entry in entries:
            every, _ = interval.objects.get_or_create(every=entry.every_s, period="seconds")
            periodic.objects.update_or_create(
                name=entry.name,
                defaults={
                    "task": entry.task,
                    "interval": every,
                    "expire_seconds": entry.expire_s,
                    "enabled": True,
                },
            )

    def remove(apps: Any, schema_editor: Any) -> None:
        periodic = apps.get_model("django_celery_beat", "PeriodicTask")
        periodic.objects.filter(task__in=[entry.task for entry in entries]).delete()

    return create, remove
