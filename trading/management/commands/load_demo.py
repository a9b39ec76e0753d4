from django.core.management.base import BaseCommand

from trading.demo import load_demo


class Command(BaseCommand):
    help = "Create the demo instruments and strategies (ibs_a, ibs_b); safe to run again."

    def handle(self, *args, **options):
        result = load_demo()
        if result.created:
            self.stdout.write(f"created: {', '.join(result.created)}")
        else:
            self.stdout.write("demo data already present; nothing changed")
        for var in result.unset_variables:
            self.stderr.write(f"warning: environment variable {var} is not set; set it in .env before the "
                              f"worker starts (see deploy/.env.example)")
