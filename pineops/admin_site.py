"""The admin site of PineOps: Django's, plus the operator dashboard at /admin/dashboard/, which is where a
login lands for trading staff (view permission on trades and positions; anyone else lands on the index).
The index lists Trading first and the maintenance models (periodic tasks, heartbeats, worker cursors,
configuration revisions, login records, users) under System."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig, SimpleAdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.urls import reverse

from pineops.process import headless_process

SYSTEM_MODELS = {"trading": {"Heartbeat", "WorkerCursor", "ConfigRevision"}}
SYSTEM_APPS = ("django_celery_beat", "auth", "axes")
class PineOpsAdminSite(admin.AdminSite):
    site_header = "PineOps"
    site_title = "PineOps admin"
    index_title = "Trading appliance"
    index_template = "admin/pineops_index.html"

    def login(self, request, extra_context=None):
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            extra_context = {**(extra_context or {}), REDIRECT_FIELD_NAME: reverse("admin:landing", current_app=self.name)}
        return super().login(request, extra_context)

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        trading = [a for a in apps if a["app_label"] == "trading"]
        system_models = []
        for app in trading:
            keep = SYSTEM_MODELS["trading"]
            system_models += [m for m in app["models"] if m["object_name"] in keep]
            app["models"] = [m for m in app["models"] if m["object_name"] not in keep]
        others = [a for a in apps if a["app_label"] != "trading"]
        for app in others:
            if app["app_label"] in SYSTEM_APPS:
                system_models += [{**m, "name": f"{app['name']}: {m['name']}"} for m in app["models"]]
        rest = [a for a in others if a["app_label"] not in SYSTEM_APPS]
        system = [{"name": "System", "app_label": "system", "app_url": "", "has_module_perms": True,
                   "models": system_models}] if system_models else []
        return trading + rest + system

    def get_urls(self):
        from trading.admin.dashboard import dashboard_urls  # models are loaded by now

        return dashboard_urls(self) + super().get_urls()


class PineOpsAdminConfig(AdminConfig):
    default_site = "pineops.admin_site.PineOpsAdminSite"

    def ready(self):
        # A headless process (pineops.process) skips what AdminConfig does as it starts, importing every admin
        # module (the dashboard, its charts, pandas); pineops.urls discovers the admin wherever the URL conf is
        # loaded (the web, `manage.py check`).
        if headless_process():
            SimpleAdminConfig.ready(self)  # the admin's checks registered, its modules not imported
        else:
            super().ready()
