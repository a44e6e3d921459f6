"""The notifications' housekeeping: re-send what the broker lost (see outbox.reconcile)."""

from django.db import migrations

from sundial_site.housekeeping import Periodic, schedule

HOUSEKEEPING = [
    Periodic("sundial: notifications reconcile", "notifications.tasks.reconcile", 15, 60),
]


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(*schedule(HOUSEKEEPING))]
