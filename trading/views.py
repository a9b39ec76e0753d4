"""Public endpoints. /healthz needs no login and shows nothing but component health."""
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from trading.health.checks import run_checks


@never_cache
@require_GET
def healthz(request):
    healthy, checks = run_checks()
    failing = sorted(name for name, c in checks.items() if not c["ok"])
    body = {"status": "ok" if healthy else "fail", "failing": failing, "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)
