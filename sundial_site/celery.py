"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery

import sundial_site.broker  # noqa: F401  (registers the safe "filesystem://" transport)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sundial_site.settings")

app = Celery("sundial")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
