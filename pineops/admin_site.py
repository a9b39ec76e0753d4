"""The admin site of PineOps: Django's, plus the operator dashboard at /admin/dashboard/."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class PineOpsAdminSite(admin.AdminSite):
    site_header = "PineOps"
    site_title = "PineOps admin"
    index_title = "Trading appliance"
    index_template = "admin/pineops_index.html"

    def get_urls(self):
        from trading.admin.dashboard import dashboard_urls  # models are loaded by now

        return dashboard_urls(self) + super().get_urls()


class PineOpsAdminConfig(AdminConfig):
    default_site = "pineops.admin_site.PineOpsAdminSite"
