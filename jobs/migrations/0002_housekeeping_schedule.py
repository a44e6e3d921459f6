"""Beat's periodic housekeeping, stored with django-celery-beat so it can be edited in the admin."""

from django.db import migrations

# (task name, every N seconds, expire after N seconds: a late tick is useless, the next comes)
HOUSEKEEPING = [
    ("jobs.tasks.schedule_tick", 1, 5),
    ("jobs.tasks.sweep", 2, 10),
    ("jobs.tasks.poll_running", 5, 30),
    ("jobs.tasks.reconcile", 15, 60),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, seconds, expire in HOUSEKEEPING:
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=f"sundial: {task.rsplit('.', 1)[1]}",
            defaults={"task": task, "interval": every, "expire_seconds": expire, "enabled": True},
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=[task for task, _, _ in HOUSEKEEPING]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
