# The attempt's number in its round is "number": a field called "attempt" on a model that is
# itself an attempt read as two things (docs/glossary.md).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0006_executor_kinds_from_the_registry"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="taskrun", name="taskrun_unique_attempt"),
        migrations.RenameField(model_name="taskrun", old_name="attempt", new_name="number"),
        migrations.AlterField(
            model_name="taskrun",
            name="number",
            field=models.PositiveIntegerField(
                default=1, help_text="The attempt's number in its round."
            ),
        ),
        migrations.AddConstraint(
            model_name="taskrun",
            constraint=models.UniqueConstraint(
                fields=("run", "task_name", "round", "number"), name="taskrun_unique_attempt"
            ),
        ),
    ]
