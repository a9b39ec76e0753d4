from django.db import migrations


def create_killswitch(apps, schema_editor):
    apps.get_model("trading", "KillSwitch").objects.get_or_create(pk=1, defaults={"mode": "off"})


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial")]
    operations = [migrations.RunPython(create_killswitch, migrations.RunPython.noop)]
