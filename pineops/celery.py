"""Celery application: Redis broker, django-celery-beat DatabaseScheduler (once across hosts: trading.beat),
tasks from trading."""
import os

from celery import Celery
from celery.signals import worker_shutting_down

from pineops.env import load_env

load_env()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pineops.settings")

app = Celery("pineops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_shutting_down.connect
def deliver_the_last_alerts(**kwargs):
    """A stopping appliance's last words ("worker stopped", "hub stopped") leave before the worker goes:
    supervisord stops the Celery worker after the processes that write them."""
    import logging

    from trading.notify.delivery import deliver_notifications

    try:
        report = deliver_notifications(budget=8.0)
        logging.getLogger(__name__).info("last alerts delivered before stopping: %s", report.counts())
    except Exception as exc:  # noqa: BLE001 — stopping must not fail over an alert
        logging.getLogger(__name__).warning("last alerts not delivered (%s)", exc.__class__.__name__)
