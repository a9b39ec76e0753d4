"""Login throttling around django-axes: the client address, the lockout page, one alert per lockout.

Axes counts failed logins per username and per address and decides the lockouts (settings
AXES_*); this module only says where a request comes from, what a locked-out visitor sees, and
turns each lockout into one emergency alert. It never unlocks anything and never logs a password.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import Q
from django.shortcuts import render

log = logging.getLogger(__name__)


def client_address(request) -> str | None:
    """REMOTE_ADDR, or behind PROXY_COUNT proxies the address the outermost one saw."""
    proxies = getattr(settings, "PROXY_COUNT", 0)
    if proxies > 0:
        chain = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(chain) >= proxies:
            return chain[-proxies]
    return request.META.get("REMOTE_ADDR")


def cool_off_minutes() -> int:
    return round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)


def lockout_response(request, original_response=None, credentials=None):
    """The admin's own page, status 429, saying for how long (nothing about which check tripped)."""
    from django.contrib import admin

    context = {**admin.site.each_context(request), "title": "Login locked", "minutes": cool_off_minutes(),
               "failure_limit": settings.AXES_FAILURE_LIMIT}
    return render(request, "admin/login_locked.html", context, status=429)


def _shown(value) -> str:
    """A visitor-typed value, safe in one alert line: bounded, no newlines or backticks."""
    text = "" if value is None else str(value)
    text = "".join(ch if ch.isprintable() and ch != "`" else "?" for ch in text)
    return text[:64] + ("…" if len(text) > 64 else "")


def alert_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """One emergency alert per lockout (axes signals every further attempt too; the dedupe key is the
    first failure row still counting against this username or address, so a new key means a new lockout)."""
    from axes.models import AccessAttempt

    from trading.delivery.alerts import enqueue

    match = Q(pk__in=[])
    if username:
        match |= Q(username=username)
    if ip_address:
        match |= Q(ip_address=ip_address)
    first = AccessAttempt.objects.filter(match).order_by("pk").values_list("pk", flat=True).first()
    failures = getattr(request, "axes_failures_since_start", None)
    user, address = _shown(username), _shown(ip_address)
    log.warning("admin login locked out username=%s address=%s failures=%s", user, address, failures)
    try:
        enqueue("emergency", f"Admin login locked out: user `{user}` from {address}",
                body=f"{failures or settings.AXES_FAILURE_LIMIT} failed logins. Logins as `{user}` and from {address} "
                     f"are refused for {cool_off_minutes()} minutes after the last attempt, even with the right "
                     f"password. To unlock sooner: Admin → Axes → Access attempts, delete the rows.",
                fields={"username": user, "address": address, "failures": failures},
                dedupe_key=f"login-lockout:{first if first is not None else f'{user}:{address}'}")
    except Exception:  # noqa: BLE001 — the lockout holds whether or not the alert could be queued
        log.exception("could not queue the lockout alert username=%s address=%s", user, address)


def connect() -> None:
    from axes.signals import user_locked_out

    user_locked_out.connect(alert_lockout, dispatch_uid="pineops-lockout-alert")
