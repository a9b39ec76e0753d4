from django.contrib import admin
from django.urls import path

from trading.views import healthz

admin.autodiscover()  # done at start-up too, except in the headless processes (pineops.admin_site)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
