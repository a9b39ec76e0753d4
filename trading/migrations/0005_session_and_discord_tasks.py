"""Periodic tasks of the notification outbox and the CME session, as rows the operator may edit.

The session tasks use crontabs in America/Chicago, so 17:00 exchange time is 22:00 UTC in summer
and 23:00 UTC in winter without anyone touching the schedule.
"""
from django.db import migrations

EXCHANGE_TZ = "America/Chicago"
INTERVAL_TASKS = [
    ("Discord delivery", "trading.deliver_notifications", 5, "Send queued alerts to Discord in order, 429-aware"),
]
CRONTAB_TASKS = [
    # name, task, minute, hour, day_of_week, description
    ("CME session open (daily-stop reset)", "trading.open_session", "0", "17", "0-4",
     "17:00 America/Chicago, Sunday–Thursday: the next CME trading day starts with a clean daily stop"),
    ("Daily summary", "trading.daily_summary", "15", "16", "1-5",
     "16:15 America/Chicago, Monday–Friday: trades, P&L and open positions per strategy"),
]


def create_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds, description in INTERVAL_TASKS:
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults=dict(task=task, interval=every, description=description))
    for name, task, minute, hour, dow, description in CRONTAB_TASKS:
        cron, _ = CrontabSchedule.objects.get_or_create(minute=minute, hour=hour, day_of_week=dow, day_of_month="*",
                                                        month_of_year="*", timezone=EXCHANGE_TZ)
        PeriodicTask.objects.get_or_create(name=name, defaults=dict(task=task, crontab=cron, description=description))


def remove_tasks(apps, schema_editor):
    names = [t[0] for t in INTERVAL_TASKS + CRONTAB_TASKS]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [("trading", "0004_bar_store")]
    operations = [migrations.RunPython(create_tasks, remove_tasks)]
