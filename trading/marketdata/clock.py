"""The market's clock: the one "now" of the current session for the dashboard, the daily stop's reset and
the daily summary (the worker decides on its bars' own times and needs no clock).

`PINEOPS_MARKET_CLOCK=wall` (live trading, the default): the market's time is the wall clock.
`data` (a replay: the demo, a test; the default when PINEOPS_DEMO=1): the end of the latest bar the hub
has made (its heartbeat's last minute bar), else of the latest hourly bar in the bar store; before any
bar, the wall clock. Read once at the edge (a view, a task) and passed in.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from trading.models import Heartbeat, StoredBar


def market_now(wall: datetime | None = None) -> datetime:
    wall = wall or timezone.now()
    if settings.MARKET_CLOCK != "data":
        return wall
    minute = Heartbeat.objects.filter(process="hub").values_list("last_bar_time", flat=True).first()
    if minute is not None:
        return minute + timedelta(minutes=1)
    hour = StoredBar.objects.filter(timeframe="1h").order_by("-ts").values_list("ts", flat=True).first()
    return hour + timedelta(hours=1) if hour is not None else wall


def describe(now: datetime) -> str:
    """How a page names the clock it shows: the wall clock, or the replay's time."""
    return "wall clock" if settings.MARKET_CLOCK != "data" else f"replay clock (latest bar), {now:%Y-%m-%d %H:%M} UTC"
