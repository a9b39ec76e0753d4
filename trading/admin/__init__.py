"""Admin registrations, one module per models module."""
from . import instruments, ops, orders, risk, strategies, trades  # noqa: F401

from django.contrib import admin

admin.site.site_header = "PineOps"
admin.site.site_title = "PineOps admin"
admin.site.index_title = "Trading appliance"
