"""The live log of one attempt: its tail, what is new by cursor, earlier pages, a download.

The page polls ``more`` every second with the cursor it holds; the answer is the new lines
(appended) and a poller holding the next cursor (swapped out of band), nothing (204) while
nothing is new, or HTMX's 286, which stops the polling, once the attempt is final and its
log exhausted.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header

from executors.base import ExecutorError
from jobs import logs
from jobs.engine import FINAL_ATTEMPT
from jobs.models import TaskRun

STOP_POLLING = 286  # HTMX's own status for it


def _attempt(task_run_id: int) -> TaskRun:
    return get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id)


@login_required
def task_log(request: HttpRequest, task_run_id: int) -> HttpResponse:
    task_run = _attempt(task_run_id)
    page = logs.read_tail(task_run)
    # An attempt that has not started polls too: its log is read from the start once it has one.
    polling = not page.problem or not task_run.log_ref
    context = {"task_run": task_run, "page": page, "polling": polling}
    return render(request, "jobs/task_log.html", context)


@login_required
def task_log_more(request: HttpRequest, task_run_id: int) -> HttpResponse:
    """The lines after the cursor, for the page's poller."""
    task_run = _attempt(task_run_id)  # its status before the read: final means all is written
    final = task_run.status in FINAL_ATTEMPT
    cursor = request.GET.get("cursor") or None
    if not task_run.log_ref:
        return HttpResponse(status=STOP_POLLING if final else 204)
    try:
        page = logs.read_after(task_run, cursor)
    except ExecutorError as exc:
        if exc.permanent:
            return HttpResponseBadRequest(f"cannot read the log from here: {exc.message}")
        return HttpResponse(status=204)  # asked again in a second
    if not page.lines and page.cursor == cursor:
        if not final:
            return HttpResponse(status=204)
        # The last answer: the status shown turns final as the polling stops.
        response = render(
            request, "jobs/partials/log_status.html", {"task_run": task_run, "oob": True}
        )
        response.status_code = STOP_POLLING
        return response
    context = {"task_run": task_run, "page": page, "polling": True, "oob": True}
    return render(request, "jobs/partials/log_more.html", context)


@login_required
def task_log_earlier(request: HttpRequest, task_run_id: int) -> HttpResponse:
    """The page of lines before the position ``before`` that the page's button holds, with
    its own button; a position the log can no longer be read at is said in the button's
    place (a 200: HTMX shows no 4xx answer)."""
    task_run = _attempt(task_run_id)
    before = request.GET.get("before", "")
    problem = ""
    try:
        page = logs.read_earlier(task_run, before)
    except logs.UnknownPosition as exc:
        return HttpResponseBadRequest(str(exc))
    except ExecutorError as exc:
        # Trying again can help a transient error: the button stays.
        page = logs.Page(earlier=None if exc.permanent else before)
        problem = f"cannot read the earlier lines: {exc.message}"
    context = {"task_run": task_run, "page": page, "problem": problem}
    return render(request, "jobs/partials/log_earlier.html", context)


@login_required
def task_log_download(request: HttpRequest, task_run_id: int) -> HttpResponse:
    """The whole log as a file: a local log file as it is, any other log read page by page."""
    task_run = _attempt(task_run_id)
    name = (
        f"{task_run.run.snapshot['process']['name']}-run{task_run.run_id}-"
        f"{task_run.task_name}-{task_run.round}.{task_run.number}.log"
    )
    if not task_run.log_ref:
        return HttpResponse("this attempt has not started, so it has no log yet", status=404)
    try:
        path = logs.log_file(task_run)
        if path is not None:
            return FileResponse(open(path, "rb"), as_attachment=True, filename=name)
    except FileNotFoundError:
        return HttpResponse("the log file is gone", status=404)
    except ExecutorError as exc:
        return HttpResponseBadRequest(f"cannot read the log: {exc.message}")
    response = StreamingHttpResponse(
        (line.encode() for line in logs.log_lines(task_run)),
        content_type="text/plain; charset=utf-8",
    )
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response
