"""Beat's periodic housekeeping, stored with django-celery-beat so it can be edited in the admin."""

from django.db import migrations

from sundial_site.housekeeping import Periodic, schedule

HOUSEKEEPING = [
    Periodic("sundial: schedule_tick", "jobs.tasks.schedule_tick", 1, 5),
    Periodic("sundial: sweep", "jobs.tasks.sweep", 2, 10),
    Periodic("sundial: poll_running", "jobs.tasks.poll_running", 5, 30),
    Periodic("sundial: reconcile", "jobs.tasks.reconcile", 15, 60),
]


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(*schedule(HOUSEKEEPING))]
