"""Create (or reset) the demo process that `make run` shows running."""

from django.core.management.base import BaseCommand
from django.db import transaction

from jobs.cron import reschedule
from jobs.models import ProcessDefinition, ScheduleKind, TaskDefinition, TaskDependency

DEMO = "demo-etl"

# Three local tasks in a chain. "transform" fails on its first attempt (a flaky upstream,
# as in real life) and succeeds on the retry, so a new user sees fail -> retry -> green.
TASKS = [
    ("extract", {"shell": "echo 'extracting orders'; sleep 2; echo '1042 rows'"}, 1, []),
    (
        "transform",
        {
            "shell": (
                'echo "transform, attempt $SUNDIAL_ATTEMPT"; '
                'if [ "$SUNDIAL_ATTEMPT" = 1 ]; then '
                'echo "upstream API timed out" >&2; exit 1; fi; '
                "sleep 1; echo 'cleaned 1042 rows'"
            )
        },
        3,
        ["extract"],
    ),
    ("load", {"shell": "echo 'loading into the warehouse'; sleep 1; echo done"}, 1, ["transform"]),
]


class Command(BaseCommand):
    help = "Create the demo process (three local tasks on a one-minute cron), if it is missing."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="recreate it from scratch")

    @transaction.atomic
    def handle(self, *args, reset: bool = False, **options):
        existing = ProcessDefinition.objects.filter(name=DEMO).first()
        if existing and not reset:
            self.stdout.write(f"demo process {DEMO!r} already exists")
            return
        if existing:
            existing.tasks.all().delete()
            process = existing
        else:
            process = ProcessDefinition.objects.create(
                name=DEMO,
                description="Demo: extract -> transform (fails once, then retries) -> load.",
                schedule_kind=ScheduleKind.CRON,
                cron="* * * * *",
                timezone="UTC",
                overlap="skip",
            )
        created = {}
        for name, config, attempts, requires in TASKS:
            created[name] = TaskDefinition.objects.create(
                process=process,
                name=name,
                executor="local",
                config=config,
                max_attempts=attempts,
                retry_initial_delay_s=5,
                retry_jitter=0,
            )
            for upstream in requires:
                TaskDependency.objects.create(task=created[name], upstream=created[upstream])
        reschedule(process)
        self.stdout.write(f"demo process {DEMO!r} created; it runs every minute")
