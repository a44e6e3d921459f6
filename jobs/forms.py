"""Validation for editing processes and their tasks in the admin.

Every message names the problem in the product's words, because the admin shows it as is.
Dependencies are checked across the whole task formset, so tasks added in the same save
can be referenced, and the edges are stored when the formset is saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html, format_html_join

from executors.config import (
    ConfigError,
    configured_memory_mib,
    max_memory_mib,
    sets_memory,
    validate_config,
)
from executors.registry import KINDS
from jobs.engine import parse_retry_rules, task_graph_cycle
from jobs.json_input import JsonInputError, parse_json, parse_json_object
from jobs.models import ProcessDefinition, ScheduleKind, TaskDefinition, TaskDependency
from jobs.schedule import ScheduleError, parse_timezone, validate_cron


class ProcessDefinitionForm(forms.ModelForm):
    class Meta:
        model = ProcessDefinition
        fields = [
            "name",
            "description",
            "owner",
            "critical",
            "schedule_kind",
            "cron",
            "timezone",
            "min_gap_seconds",
            "catch_up",
            "catch_up_window_seconds",
            "overlap",
            "run_time_limit_s",
            "paused",
            "archived",
            "page_after_failures",
            "missed_start_grace_s",
            "long_running_after_s",
            "long_running_factor",
            "deadline",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only continuous schedules use the gap; clean() asks for it there.
        self.fields["min_gap_seconds"].required = False

    def clean_timezone(self) -> str:
        try:
            return parse_timezone(self.cleaned_data["timezone"]).key
        except ScheduleError as exc:
            raise ValidationError(str(exc)) from None

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("schedule_kind")
        if kind == ScheduleKind.CRON:
            if not data.get("cron", "").strip():
                self.add_error("cron", "a cron schedule needs a cron expression")
            else:
                try:
                    data["cron"] = validate_cron(data["cron"])
                except ScheduleError as exc:
                    self.add_error("cron", str(exc))
        if data.get("min_gap_seconds") is None:
            if kind == ScheduleKind.CONTINUOUS:
                self.add_error(
                    "min_gap_seconds", "a continuous schedule needs a minimum gap between runs"
                )
            else:
                data["min_gap_seconds"] = self.instance.min_gap_seconds
        return data


class JsonTextField(forms.JSONField):
    """A JSON textarea whose errors name the problem and where, and which keeps what was typed."""

    json_name = "value"  # what errors call the text, and the start of the paths they give

    def to_python(self, value):
        if not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            return parse_json(value, self.json_name)
        except JsonInputError as exc:
            raise ValidationError(str(exc), code="invalid") from None

    def bound_data(self, data, initial):
        # Django's own parse here would hand back what to_python refused (an infinity, a
        # surrogate the page cannot encode) or recurse too deep, instead of the typed text.
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return parse_json(data, self.json_name)
        except JsonInputError:
            return InvalidJSONInput(data)

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value  # the user's own text, so nothing typed is lost
        return json.dumps(value, ensure_ascii=False, indent=2)


class ConfigField(JsonTextField):
    json_name = "config"
    # An empty config ({} or nothing) is checked against its executor's schema like any
    # other, so the answer says what is missing ("exactly one of command or shell is
    # required"), not Django's "This field is required".
    empty_values: list[object] = [None, "", [], ()]

    def to_python(self, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        return super().to_python(value)


class RetryRulesField(JsonTextField):
    json_name = "retry_rules"


def _names(text: str) -> list[str]:
    """Task names from "a, b,c" in order, without blanks or repeats."""
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def config_help() -> str:
    """The config field's help: an example config of every kind a person may pick."""
    examples = format_html_join(
        "",
        "<br>{}: <code>{}</code>",
        ((kind.label, json.dumps(kind.example)) for kind in KINDS.values() if kind.offered),
    )
    return format_html(
        "JSON, checked against the executor's schema (the README lists every field)."
        " For example:{}",
        examples,
    )


class TaskDefinitionForm(forms.ModelForm):
    requires = forms.CharField(
        required=False,
        help_text="Comma-separated tasks of this process that must succeed first.",
    )
    runs_after = forms.CharField(
        label="Runs after",
        required=False,
        help_text="Comma-separated tasks that must finish first, whatever their outcome.",
    )

    class Meta:
        model = TaskDefinition
        fields = [
            "name",
            "executor",
            "config",
            "max_attempts",
            "retry_initial_delay_s",
            "retry_multiplier",
            "retry_max_delay_s",
            "retry_jitter",
            "time_limit_s",
            "retry_on_timeout",
            "require_explicit_success",
            "retry_rules",
            "oom_memory_factor",
            "oom_memory_max_mib",
        ]
        field_classes = {"config": ConfigField, "retry_rules": RetryRulesField}
        widgets = {
            "config": forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
            "retry_rules": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["config"].help_text = config_help()
        if self.instance.pk:
            edges = self.instance.upstream_edges.all()
            self.initial["requires"] = ", ".join(e.upstream.name for e in edges if e.required)
            self.initial["runs_after"] = ", ".join(e.upstream.name for e in edges if not e.required)

    def clean_requires(self) -> list[str]:
        return _names(self.cleaned_data["requires"])

    def clean_runs_after(self) -> list[str]:
        return _names(self.cleaned_data["runs_after"])

    def clean_retry_jitter(self) -> float:
        jitter = self.cleaned_data["retry_jitter"]
        if not 0 <= jitter <= 1:
            raise ValidationError("jitter must be between 0 and 1 (a fraction of the delay)")
        return jitter

    def clean_retry_rules(self) -> list:
        rules = self.cleaned_data["retry_rules"]
        if rules is None:  # left empty: no rules
            return []
        try:
            parse_retry_rules(rules)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return rules

    def clean_oom_memory_max_mib(self) -> int | None:
        """A cap the task's executor can honour, no lower than what its config asks for.

        (Fields are cleaned in order: the executor and its config come first.)
        """
        cap = self.cleaned_data["oom_memory_max_mib"]
        kind = self.cleaned_data.get("executor")
        if cap is None or kind is None:
            return cap
        label = KINDS[kind].label
        if not sets_memory(kind):
            raise ValidationError(f"{label} tasks have no memory_mib to raise; leave it empty")
        most = max_memory_mib(kind)
        if most is not None and cap > most:
            raise ValidationError(f"{label} allows at most {most} MiB")
        asked = configured_memory_mib(kind, self.cleaned_data.get("config"))
        if asked is not None and cap < asked:
            raise ValidationError(f"must be at least the {asked} MiB the config asks for")
        return cap

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("executor")
        unavailable = KINDS[kind].unavailable() if kind is not None else None
        if unavailable is not None:
            self.add_error("executor", f"{KINDS[kind].label} is unavailable here: {unavailable}")
        elif kind is not None and "config" in data:
            try:
                validate_config(kind, data["config"])
            except ConfigError as exc:
                self.add_error("config", str(exc))
        return data


def dependency_problems(tasks: list[tuple[str, list[str], list[str]]]) -> list[str]:
    """What is wrong with the tasks' edges, given (name, requires, runs after) per task."""
    problems: list[str] = []
    names: set[str] = set()
    for name, _, _ in tasks:
        if name in names:
            problems.append(f"duplicate task name {name!r}")
        names.add(name)
    for name, requires, after in tasks:
        if name in requires or name in after:
            problems.append(f"task {name!r} cannot depend on itself")
        for verb, upstreams in (("requires", requires), ("runs after", after)):
            problems += [
                f"task {name!r} {verb} unknown task {up!r}"
                for up in upstreams
                if up != name and up not in names
            ]
        problems += [
            f"task {name!r} lists {up!r} under both Requires and Runs after; choose one"
            for up in requires
            if up in after and up != name
        ]
    if not problems:
        # A cycle among misspelt or repeated names would only repeat the errors above.
        cycle = task_graph_cycle({name: [*requires, *after] for name, requires, after in tasks})
        if cycle:
            problems.append("dependency cycle: " + " → ".join(cycle))
    return problems


class TaskFormSet(BaseInlineFormSet):
    """The tasks of one process; validates and stores their dependencies as a whole."""

    def _declared(self) -> Iterator[tuple[str, list[str], list[str]]]:
        """(name, requires, runs after) of every task that stays after this save."""
        for form in self.forms:
            name = form.cleaned_data.get("name")
            if name and not self._should_delete_form(form):
                data = form.cleaned_data
                yield name, data.get("requires", []), data.get("runs_after", [])

    def clean(self) -> None:
        if problems := dependency_problems(list(self._declared())):
            raise ValidationError(problems)
        super().clean()

    def save(self, commit: bool = True) -> list[TaskDefinition]:
        saved = super().save(commit)
        if commit:
            self._save_dependencies()
        return saved

    def _save_dependencies(self) -> None:
        """Replace the process's edges with those the forms declare."""
        tasks = {task.name: task for task in self.instance.tasks.all()}
        TaskDependency.objects.filter(task__process=self.instance).delete()
        TaskDependency.objects.bulk_create(
            TaskDependency(task=tasks[name], upstream=tasks[up], required=required)
            for name, requires, after in self._declared()
            for upstreams, required in ((requires, True), (after, False))
            for up in upstreams
        )


class RunForm(forms.Form):
    """Run a process now: all of its tasks or some of them, with parameters."""

    tasks = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "choose at least one task to run"},
        help_text="Upstreams of a chosen task that are not chosen count as done.",
    )
    parameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "vLargeTextField"}),
        help_text='A JSON object the tasks read as SUNDIAL_PARAMETERS, e.g. {"day": "2026-12-01"}.',
    )

    def __init__(self, *args, task_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.task_names = task_names
        self.fields["tasks"].choices = [(name, name) for name in task_names]
        self.fields["tasks"].initial = task_names

    def clean_parameters(self) -> dict:
        text = self.cleaned_data["parameters"].strip()
        if not text:
            return {}
        try:
            return parse_json_object(text, "parameters")
        except JsonInputError as exc:
            raise ValidationError(str(exc)) from None

    def only(self) -> list[str] | None:
        """The chosen tasks, or None when all are chosen (a whole run)."""
        chosen = self.cleaned_data["tasks"]
        return None if set(chosen) == set(self.task_names) else chosen
