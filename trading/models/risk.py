"""Killswitch (one row, with an audit log) and the daily risk state per strategy and CME day."""
from django.conf import settings
from django.db import models

from .strategies import Strategy


class KillSwitch(models.Model):
    """The operator's killswitch: a single row (pk=1). Read it through trading.risk.killswitch."""

    class Mode(models.TextChoices):
        OFF = "off", "Off — trading normally"
        ENTRIES = "entries", "Block entries (exits still go out)"
        HALT = "halt", "Full halt (no orders at all)"
        FLATTEN = "flatten", "Flatten (exit every open position, block entries)"

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.OFF)
    reason = models.CharField(max_length=300, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "killswitch"
        verbose_name_plural = "killswitch"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="killswitch_single_row")]

    def __str__(self):
        return f"Killswitch: {self.get_mode_display()}"


class RiskControl(models.TextChoices):
    """Which control refused an entry or held an exit (trading.risk.decision decides)."""
    KILLSWITCH = "killswitch", "killswitch (admin)"
    ENV_OVERRIDE = "env", "killswitch (POLICY_KILLSWITCH)"
    UNREADABLE = "unreadable", "risk state unreadable (fail closed)"
    DAILY_STOP = "daily_stop", "daily stop"
    MODEL_POLICY = "model_policy", "ML model unavailable (policy: skip entries)"
    ML_FILTER = "ml_filter", "ML filter (score below threshold or missing)"
    MAX_POSITIONS = "max_positions", "max positions"
    POSITION_OPEN = "position_open", "the instrument's previous position is still open at the broker"
    MARKET_CLOSED = "market_closed", "the session closes before the order could fill"
    DISABLED = "disabled", "instrument or strategy disabled (its open position still managed)"
    SUPERSEDED = "superseded", "superseded (the broker's bracket closed the position first)"


class KillSwitchEvent(models.Model):
    """Audit log: who changed the killswitch, when, from what to what, and why."""

    at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.CharField(max_length=150, help_text="Username or process that made the change")
    previous_mode = models.CharField(max_length=8, choices=KillSwitch.Mode.choices)
    mode = models.CharField(max_length=8, choices=KillSwitch.Mode.choices)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "killswitch event"

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor}: {self.previous_mode} → {self.mode}"


class DailyRiskState(models.Model):
    """Realised P&L and the daily stop of one strategy for one CME trading day. Kept with each trade booked
    (in the trade's transaction: trading.risk.daily.record_realized), it is the daily summary the dashboard's
    figures read instead of every trade: P&L, trades, winners, gross win and gross loss of the session."""

    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="daily_states")
    session_date = models.DateField()
    realized_pnl = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    trades = models.PositiveIntegerField(default=0)
    wins = models.PositiveIntegerField(default=0, help_text="Trades with P&L > 0")
    won = models.DecimalField(max_digits=14, decimal_places=2, default=0, help_text="Gross win $")
    lost = models.DecimalField(max_digits=14, decimal_places=2, default=0, help_text="Gross loss $ (≤ 0)")
    stopped = models.BooleanField(default=False)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-session_date", "strategy__name"]
        constraints = [models.UniqueConstraint(fields=["strategy", "session_date"], name="one_risk_state_per_day")]
        verbose_name = "daily risk state"

    def __str__(self):
        return f"{self.strategy.name} {self.session_date} {self.realized_pnl}{' STOPPED' if self.stopped else ''}"
