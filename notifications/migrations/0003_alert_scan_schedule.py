"""The alert scan: missed starts, long runs and deadlines (see notifications/alerts.py)."""

from django.db import migrations

from sundial_site.housekeeping import Periodic, schedule

HOUSEKEEPING = [
    Periodic("sundial: notifications alert scan", "notifications.tasks.scan_alerts", 30, 60),
]


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_housekeeping_schedule"),
    ]

    operations = [migrations.RunPython(*schedule(HOUSEKEEPING))]
