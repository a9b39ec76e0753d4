"""The replay clock's session task: every 10 s, with PINEOPS_MARKET_CLOCK=data (the demo), the sessions the
market's clock has passed are opened (daily-stop reset) and summarised; with the wall clock it does nothing."""
from django.db import migrations

TASK = ("Market sessions (replay clock)", "trading.follow_market_clock", 10,
        "With PINEOPS_MARKET_CLOCK=data: open each session and queue its summary as the replay's time passes them")


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds, description = TASK
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(name=name, defaults=dict(task=task, interval=every, description=description))


def remove_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK[0]).delete()


class Migration(migrations.Migration):
    dependencies = [("trading", "0016_signal_features"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create_task, remove_task)]
