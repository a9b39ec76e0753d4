"""Create the admin login once: from PINEOPS_ADMIN_USER/PINEOPS_ADMIN_PASSWORD, or generated.

A generated password is written to RUNTIME_DIR/admin_login (mode 600) and printed, so the
operator can read it again; an existing user is never changed.
"""
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin user once (from env, or with a generated password) and print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("PINEOPS_ADMIN_USER") or "admin"
        password = os.environ.get("PINEOPS_ADMIN_PASSWORD")
        login_file = settings.RUNTIME_DIR / "admin_login"
        if User.objects.filter(username=username).exists():
            if password:
                self.stdout.write(f"login: {username} / (PINEOPS_ADMIN_PASSWORD)")
            elif login_file.exists():
                self.stdout.write(f"login: {login_file.read_text().strip()}")
            else:
                self.stdout.write(f"login: {username} (password set earlier)")
            return
        source = "PINEOPS_ADMIN_PASSWORD"
        if not password:
            password = secrets.token_urlsafe(12)
            login_file.write_text(f"{username} / {password}\n")
            login_file.chmod(0o600)
            source = str(login_file)
        User.objects.create_superuser(username=username, email="", password=password)
        shown = password if source != "PINEOPS_ADMIN_PASSWORD" else "(PINEOPS_ADMIN_PASSWORD)"
        self.stdout.write(f"created admin user; login: {username} / {shown}  (kept in {source})")
