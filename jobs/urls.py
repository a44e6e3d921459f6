from django.urls import path

from jobs import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("task-runs/<int:task_run_id>/log", views.task_log, name="task-run-log"),
    path(
        "api/v1/task-runs/<int:task_run_id>/report",
        api.report_task_run,
        name="api-task-run-report",
    ),
]
