"""Celery tasks: thin, idempotent wrappers over the orchestrator and its safety nets."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown

from jobs import cron, orchestrator, submission, supervision
from jobs.local_runtime import shutdown_local_runtime

# Tasks are acknowledged after they run (CELERY_TASK_ACKS_LATE), so a worker killed
# mid-task leaves its message to be redelivered; every task below tolerates repeats.


@shared_task(name="jobs.tasks.schedule_tick")
def schedule_tick() -> int:
    return cron.schedule_tick()


@shared_task(name="jobs.tasks.advance_run")
def advance_run(run_id: int) -> None:
    orchestrator.advance_run(run_id)


@shared_task(name="jobs.tasks.settle_definition")
def settle_definition(definition_id: int) -> None:
    orchestrator.settle_definition(definition_id)


@shared_task(
    name="jobs.tasks.submit_task_run",
    autoretry_for=(submission.SubmitLater,),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=None,
)
def submit_task_run(task_run_id: int) -> bool:
    return submission.submit_task_run(task_run_id)


@shared_task(name="jobs.tasks.terminate_task_run")
def terminate_task_run(task_run_id: int) -> None:
    submission.terminate_task_run(task_run_id)


@shared_task(name="jobs.tasks.poll_running")
def poll_running() -> int:
    return supervision.poll_running()


@shared_task(name="jobs.tasks.sweep")
def sweep() -> int:
    return supervision.sweep()


@shared_task(name="jobs.tasks.reconcile")
def reconcile() -> int:
    return supervision.reconcile()


# A worker that stops (Ctrl-C, SIGTERM) stops its local processes and records how each
# ended, instead of leaving them to run unsupervised. Celery sends worker_shutdown in the
# worker's main process after the tasks in flight have finished (threads pool), and
# worker_process_shutdown in each child of a prefork pool. weak=False: module functions.
worker_shutdown.connect(shutdown_local_runtime, weak=False)
worker_process_shutdown.connect(shutdown_local_runtime, weak=False)
