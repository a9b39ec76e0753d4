"""A backtest asked for in the admin: a strategy (or one instrument of it) over CME sessions of the bar store.

The run is done by Celery (trading.backtests, the same strategies.backtest functions as the CLI); this row
holds who asked, its state and progress, and the report. It never trades and never changes configuration.
"""
from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Max, Min

from .bars import StoredBar
from .instruments import Instrument
from .strategies import Strategy

TIMEFRAME = "1h"


def held_sessions(roots: list[str]) -> dict[str, tuple[date, date] | None]:
    """Per root, the first and last CME session of its hourly bars in the bar store (None: no bar)."""
    from strategies.calendar import session_date  # pandas: not at import, every process imports the models
    spans = {r["root"]: (r["first"], r["last"]) for r in StoredBar.objects.filter(root__in=roots, timeframe=TIMEFRAME)
             .values("root").annotate(first=Min("ts"), last=Max("ts"))}
    return {root: (session_date(spans[root][0]), session_date(spans[root][1])) if root in spans else None
            for root in roots}


def describe_held(spans: dict[str, tuple[date, date] | None]) -> str:
    """'6A 2026-10-26 → 2026-11-06; none of CL': what the bar store holds, for an error or a help text."""
    held = [f"{root} {span[0]} → {span[1]}" for root, span in spans.items() if span]
    empty = [root for root, span in spans.items() if not span]
    return "; ".join(held + ([f"none of {', '.join(empty)}"] if empty else []))


def roots_without_bars(roots: list[str], start: date, end: date) -> list[str]:
    """The roots that have no hourly bar in the sessions start…end (inclusive)."""
    from strategies.calendar import session_end, session_open
    found = set(StoredBar.objects.filter(root__in=roots, timeframe=TIMEFRAME, ts__gte=session_open(start),
                                         ts__lt=session_end(end)).values_list("root", flat=True).distinct())
    return [root for root in roots if root not in found]


def no_bars_message(missing: list[str], start: date, end: date, roots: list[str]) -> str:
    from strategies.calendar import session_end, session_open
    return (f"no hourly bars of {', '.join(missing)} in the bar store for the sessions {start} to {end} "
            f"({session_open(start):%Y-%m-%d %H:%M} to {session_end(end):%Y-%m-%d %H:%M} UTC); the bar store holds "
            f"{describe_held(held_sessions(roots))} (fill it with `manage.py warmup`)")


class BacktestRun(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="backtests")
    instrument = models.ForeignKey(Instrument, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                   help_text="Blank: every enabled instrument of the strategy, with its max positions")
    start_date = models.DateField(help_text="First CME session (trade date; it opens 17:00 Chicago the evening before)")
    end_date = models.DateField(help_text="Last CME session, included")
    use_ml = models.BooleanField("ML filter", default=True,
                                 help_text="Each instrument's ML filter as the worker applies it (its ML enabled, "
                                           "threshold and failure policy); off: as the CLI's --no-ml")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED, editable=False)
    progress = models.PositiveSmallIntegerField(default=0, editable=False, help_text="%")
    progress_text = models.CharField(max_length=200, blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change (a running backtest touches it as it goes)")
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    bars = models.PositiveIntegerField(default=0, editable=False, help_text="Hourly bars backtested")
    terms = models.JSONField(default=dict, editable=False,
                             help_text="What was run: max positions and each instrument's parameters and costs")
    metrics = models.JSONField(default=dict, editable=False, help_text="The CLI's report (strategies.backtest.report)")
    trades = models.JSONField(default=list, editable=False, help_text="The CLI's trade list")
    equity = models.JSONField(default=list, editable=False, help_text="[[exit time, cumulative P&L $], …]")
    skipped = models.JSONField(default=list, editable=False, help_text="Entry signals not taken, with the reason")
    notes = models.JSONField(default=list, editable=False, help_text="What the run found (e.g. a model unavailable)")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "backtest"
        indexes = [models.Index(fields=["state"]), models.Index(fields=["strategy", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="backtest_progress_at_most_100"),
            models.CheckConstraint(condition=models.Q(end_date__gte=models.F("start_date")),
                                   name="backtest_end_not_before_start"),
        ]

    def __str__(self):
        what = f"{self.strategy}/{self.instrument.root}" if self.instrument_id else f"{self.strategy}"
        return f"backtest {self.pk or 'new'}: {what} {self.start_date} → {self.end_date}"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    def legs(self):
        """The strategy instruments this run trades: the chosen one, else the strategy's enabled ones."""
        rows = self.strategy.legs.select_related("instrument").order_by("instrument__root")
        return rows.filter(instrument=self.instrument) if self.instrument_id else rows.filter(enabled=True)

    def roots(self) -> list[str]:
        return [leg.instrument.root for leg in self.legs()]

    def clean(self):
        super().clean()
        if self.strategy_id is None or self.start_date is None or self.end_date is None:
            return  # the fields' own errors say so
        if self.end_date < self.start_date:
            raise ValidationError({"end_date": f"the end {self.end_date} is before the start {self.start_date}"})
        if self.instrument_id and not self.strategy.legs.filter(instrument_id=self.instrument_id).exists():
            mine = ", ".join(self.strategy.legs.order_by("instrument__root").values_list("instrument__root", flat=True))
            raise ValidationError({"instrument": f"{self.instrument.root} is not an instrument of {self.strategy.name} "
                                                 f"(it trades {mine or 'none'}); leave it blank for the whole strategy"})
        roots = self.roots()
        if not roots:
            raise ValidationError({"strategy": f"{self.strategy.name} has no enabled instrument; pick one of its "
                                               "instruments"})
        spans = held_sessions(roots)
        held = [span for span in spans.values() if span]
        if not held:
            raise ValidationError({"start_date": f"the bar store holds no hourly bars of {', '.join(roots)}; fill it "
                                                 "with `manage.py warmup`"})
        first, last = min(s[0] for s in held), max(s[1] for s in held)
        errors = {}
        if self.start_date > last:
            errors["start_date"] = f"after the last session in the bar store ({describe_held(spans)})"
        if self.end_date < first:
            errors["end_date"] = f"before the first session in the bar store ({describe_held(spans)})"
        if errors:
            raise ValidationError(errors)
        missing = roots_without_bars(roots, self.start_date, self.end_date)
        if missing:
            raise ValidationError({"start_date": no_bars_message(missing, self.start_date, self.end_date, roots)})
