from django.urls import path

from jobs import api, run_page, views

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/<int:run_id>/", run_page.run_page, name="run"),
    path("runs/<int:run_id>/kill", run_page.kill, name="run-kill"),
    path("runs/<int:run_id>/retry", run_page.retry, name="run-retry"),
    path("task-runs/<int:task_run_id>/log", views.task_log, name="task-run-log"),
    path(
        "api/v1/task-runs/<int:task_run_id>/report",
        api.report_task_run,
        name="api-task-run-report",
    ),
]
