"""The daily drift report: a session re-run by strategies.backtest beside what the worker decided and delivered.

One report per strategy and CME session (re-running it replaces its items); an item per decision of
either side, matched or not, each difference with the reason found in the records (trading.drift).
"""
from django.db import models

from .signals import Signal
from .strategies import Strategy

PRICE = dict(max_digits=20, decimal_places=9, null=True, blank=True)


class DriftReport(models.Model):
    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="drift_reports")
    session_date = models.DateField(help_text="The CME trading day compared")
    created_at = models.DateTimeField(auto_now=True, help_text="When the report was (last) made")
    bars = models.PositiveIntegerField(default=0, help_text="Hourly bars of the session in the bar store")
    matched = models.PositiveIntegerField(default=0)
    differences = models.PositiveIntegerField(default=0, help_text="Differences, not counting the ones that follow "
                                                                   "from another (an exit of an entry that differs)")
    unexplained = models.PositiveIntegerField(default=0, help_text="Differences no record explains")
    backtest_pnl = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    live_pnl = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    equity = models.JSONField(default=dict, help_text="Live and backtest equity: {side: [[exit time, $], …]}")
    notes = models.JSONField(default=list, help_text="What the report found in the records (gaps, changes, …)")

    class Meta:
        ordering = ["-session_date", "strategy__name"]
        constraints = [models.UniqueConstraint(fields=["strategy", "session_date"], name="one_drift_report_per_session")]

    def __str__(self):
        return f"{self.strategy.name} {self.session_date}: {self.differences} differences"


class DriftItem(models.Model):
    class Kind(models.TextChoices):
        MATCHED = "matched", "matched"
        MISSING_LIVE = "missing_live", "missing live (the backtest decided it, the worker did not)"
        EXTRA_LIVE = "extra_live", "extra live (the worker decided it, the backtest did not)"
        DIFFERENT = "different", "different price or time"

    class Reason(models.TextChoices):
        NONE = "", "—"
        HUB_GAP = "hub_gap", "hub gap"
        WORKER_DOWN = "worker_down", "worker down"
        KILLSWITCH = "killswitch", "killswitch"
        DAILY_STOP = "daily_stop", "daily stop"
        CONFIG_CHANGE = "config_change", "configuration change"
        MODEL_CHANGE = "model_change", "model change"
        BROKER_REJECTION = "broker_rejection", "broker rejection"
        ORDER_EXPIRED = "order_expired", "order expired"
        UNEXPLAINED = "unexplained", "unexplained"

    report = models.ForeignKey(DriftReport, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    root = models.CharField(max_length=8)
    action = models.CharField(max_length=8, choices=Signal.Action.choices)
    bar_time = models.DateTimeField(help_text="Start of the bar the decision was made on (UTC)")
    exit_reason = models.CharField(max_length=32, blank=True)
    backtest_time = models.DateTimeField(null=True, blank=True, help_text="The backtest's fill")
    backtest_price = models.DecimalField(**PRICE)
    live_time = models.DateTimeField(null=True, blank=True, help_text="The books' fill")
    live_price = models.DecimalField(**PRICE)
    live_state = models.CharField(max_length=120, blank=True, help_text="The live signal's state and control")
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    detail = models.CharField(max_length=400, blank=True)
    follows = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="consequences",
                                help_text="The difference this one follows from (an exit of a trade whose entry "
                                          "differs, a slot that trade held)")
    signal = models.ForeignKey(Signal, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["bar_time", "root", "action"]

    def __str__(self):
        return f"{self.root} {self.action} {self.bar_time:%Y-%m-%d %H:%M} {self.kind}"
