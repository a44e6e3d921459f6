"""Sundial's admin site: branded, its own models first, users under accounts, and
django-celery-beat's tables in one "Housekeeping" section that only superusers see.

The grouping is done where Django builds the index and the sidebar (``get_app_list``), so
the models keep their URLs (``admin:jobs_user_changelist``) and their permissions.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest

HOUSEKEEPING = "django_celery_beat"
_ACCOUNTS_MODELS = {("jobs", "user")}

# Sections in the index and the sidebar, in this order; any other app goes before the
# housekeeping, by name.
_ORDER = ["jobs", "notifications", "auth"]


class SuperusersOnly:
    """Housekeeping is the scheduler's own bookkeeping: only superusers see or touch it."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


class SundialAdminSite(admin.AdminSite):
    site_header = "Sundial"
    site_title = "Sundial"
    index_title = "Processes, runs and accounts"

    def hide_housekeeping(self) -> None:
        """Re-register django-celery-beat's models so that only superusers may see them."""
        for model, model_admin in list(self._registry.items()):
            if model._meta.app_label != HOUSEKEEPING or isinstance(model_admin, SuperusersOnly):
                continue
            cls = type(model_admin)
            self.unregister(model)
            self.register(model, type(cls.__name__, (SuperusersOnly, cls), {}))

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = self._build_app_dict(request)
        accounts = [
            model
            for app in apps.values()
            for model in app["models"]
            if (app["app_label"], model["object_name"].lower()) in _ACCOUNTS_MODELS
        ]
        for app in apps.values():
            app["models"] = [m for m in app["models"] if m not in accounts]
        if accounts:
            auth = apps.setdefault(
                "auth",
                {
                    "name": "Accounts",
                    "app_label": "auth",
                    "app_url": accounts[0]["admin_url"],
                    "has_module_perms": True,
                    "models": [],
                },
            )
            auth["models"] += accounts
        if "auth" in apps:
            apps["auth"]["name"] = "Accounts"
        if HOUSEKEEPING in apps:
            apps[HOUSEKEEPING]["name"] = "Housekeeping"

        def place(app: dict) -> tuple[int, str]:
            label = app["app_label"]
            if label in _ORDER:
                return _ORDER.index(label), ""
            return (len(_ORDER) + 1 if label == HOUSEKEEPING else len(_ORDER)), app["name"].lower()

        sections = sorted((app for app in apps.values() if app["models"]), key=place)
        for app in sections:
            app["models"].sort(key=lambda model: model["name"].lower())
        if app_label is not None:
            return [app for app in sections if app["app_label"] == app_label]
        return sections


class SundialAdminConfig(AdminConfig):
    default_site = "jobs.admin_site.SundialAdminSite"

    def ready(self) -> None:
        super().ready()  # discovers every app's admin module, django-celery-beat's too
        site = admin.site
        assert isinstance(site, SundialAdminSite)
        site.hide_housekeeping()
