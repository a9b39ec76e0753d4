"""Periodic tasks as rows (django-celery-beat), created once so the operator's edits survive."""
from django.db import migrations

INTERVAL_TASKS = [
    # name, task, every (seconds), description
    ("Heartbeat monitor", "trading.check_heartbeats", 30, "Alert once when a process goes stale, once on recovery"),
    ("Order outbox safety net", "trading.send_pending_orders", 15, "Deliver due pending orders whose worker is down"),
    ("Stuck orders", "trading.check_stuck_orders", 60, "Settle orders of dead senders; alert on long-pending ones"),
]


def create_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds, description in INTERVAL_TASKS:
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults=dict(task=task, interval=every, description=description))


def remove_tasks(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[t[0] for t in INTERVAL_TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [("trading", "0002_killswitch_row"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create_tasks, remove_tasks)]
