from django.urls import path

from jobs import api, log_views, process_page, run_page, views

urlpatterns = [
    path("", views.home, name="home"),
    path("processes/<slug:name>/", process_page.process_page, name="process"),
    path("processes/<slug:name>/run", process_page.run_now, name="process-run"),
    path("processes/<slug:name>/pause", process_page.pause, {"paused": True}, name="process-pause"),
    path(
        "processes/<slug:name>/resume", process_page.pause, {"paused": False}, name="process-resume"
    ),
    path("runs/<int:run_id>/", run_page.run_page, name="run"),
    path("runs/<int:run_id>/kill", run_page.kill, name="run-kill"),
    path("runs/<int:run_id>/retry", run_page.retry, name="run-retry"),
    path("task-runs/<int:task_run_id>/log", log_views.task_log, name="task-run-log"),
    path("task-runs/<int:task_run_id>/log/more", log_views.task_log_more, name="task-run-log-more"),
    path(
        "task-runs/<int:task_run_id>/log/earlier",
        log_views.task_log_earlier,
        name="task-run-log-earlier",
    ),
    path(
        "task-runs/<int:task_run_id>/log/download",
        log_views.task_log_download,
        name="task-run-log-download",
    ),
    path(
        "api/v1/task-runs/<int:task_run_id>/report",
        api.report_task_run,
        name="api-task-run-report",
    ),
]
