# A stop and an attempt's end have a field each: stop_requested_at, stop_as and stop_reason
# say what was asked; reason says how the attempt ended (it held both before).

from django.db import migrations, models
from django.db.models import F


def _move_stop_reasons(apps, schema_editor):
    # An attempt still being stopped kept its stop's reason in ``reason``.
    TaskRun = apps.get_model("jobs", "TaskRun")
    TaskRun.objects.filter(
        stop_requested_at__isnull=False, status__in=["submitting", "submitted", "running"]
    ).update(stop_reason=F("reason"), reason="")


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_attempt_number"),
    ]

    operations = [
        migrations.RenameField(
            model_name="taskrun", old_name="terminate_requested_at", new_name="stop_requested_at"
        ),
        migrations.RenameField(model_name="taskrun", old_name="terminate_as", new_name="stop_as"),
        migrations.AddField(
            model_name="taskrun", name="stop_reason", field=models.TextField(blank=True)
        ),
        migrations.RunPython(_move_stop_reasons, migrations.RunPython.noop),
    ]
