"""Celery application: Redis broker, django-celery-beat DatabaseScheduler, tasks from trading."""
import os

from celery import Celery

from pineops.env import load_env

load_env()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pineops.settings")

app = Celery("pineops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
