"""Runs that ended before notifications were installed are history: count their endings
as noticed, so the reconciler does not report a day of old runs at once."""

from django.db import migrations


def notice_past_endings(apps, schema_editor):
    ending_model = apps.get_model("jobs", "RunEnding")
    notice_model = apps.get_model("notifications", "RunNotice")
    ids = ending_model.objects.values_list("id", flat=True).order_by("id")
    batch = []
    for ending_id in ids.iterator(chunk_size=5000):
        batch.append(notice_model(ending_id=ending_id))
        if len(batch) == 5000:
            notice_model.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    notice_model.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_alert_scan_schedule"),
        ("jobs", "0014_run_endings"),
    ]

    operations = [migrations.RunPython(notice_past_endings, migrations.RunPython.noop)]
