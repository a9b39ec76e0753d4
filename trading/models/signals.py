"""Signals (orders to the broker, and entries refused) and their delivery attempts: the order outbox.

A signal is written, with a deterministic id and a unique constraint, before anything is sent;
delivery claims it with a conditional update, so no restart and no second process can send the
same order twice. The webhook URL is never stored here — only the strategy's ${VAR} name.
"""
from django.db import models

from trading.delivery.outcomes import Outcome

from .instruments import Instrument
from .risk import RiskControl
from .strategies import Strategy


def signal_key(strategy: str, root: str, bar_time, action: str) -> str:
    """Deterministic id of a decision: strategy, instrument, bar start (UTC) and action."""
    return f"{strategy}:{root}:{bar_time.strftime('%Y-%m-%dT%H:%M:%SZ')}:{action}"


class Signal(models.Model):
    class Action(models.TextChoices):
        BUY = "buy", "buy (enter long)"
        EXIT = "exit", "exit (close long)"

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"
        BLOCKED = "blocked", "blocked"
        EXPIRED = "expired", "expired"
        HELD = "held", "held (full halt; sent when the halt lifts)"

    class Fill(models.TextChoices):
        """How the books price this order once the broker has it."""
        NEXT_OPEN = "next_open", "at the next bar's open (decided at a bar's close)"
        AT_SEND = "at_send", "at the market when it is sent (flatten, an exit held through a halt)"
        BRACKET = "bracket", "by the broker's own stop or target (sent with the entry)"

    key = models.CharField(max_length=120, unique=True, help_text="strategy:root:bar time:action")
    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="signals")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="signals")
    contract = models.CharField(max_length=16, blank=True)
    bar_time = models.DateTimeField(help_text="Start of the bar the decision was made on (UTC)")
    action = models.CharField(max_length=8, choices=Action.choices)
    quantity = models.PositiveIntegerField()
    signal_price = models.DecimalField(max_digits=20, decimal_places=9)
    reason = models.CharField(max_length=32, help_text="entry, or the exit reason")
    ibs = models.FloatField(null=True, blank=True)
    ml_score = models.FloatField(null=True, blank=True)
    ml_threshold = models.FloatField(null=True, blank=True,
                                     help_text="The leg's ML threshold when it was decided (blank: ML off, or an exit)")
    features = models.JSONField(null=True, blank=True,
                                help_text="The feature row the ML score was computed from (name → value)")
    payload = models.JSONField(default=dict, help_text="Exactly what is (or would be) posted")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    state_reason = models.CharField(max_length=300, blank=True, help_text="Why blocked, held, failed or expired")
    risk_control = models.CharField(max_length=16, choices=RiskControl.choices, blank=True,
                                    help_text="The control that refused or held it (blank: none did)")
    fill = models.CharField(max_length=10, choices=Fill.choices, default=Fill.NEXT_OPEN)
    market_price = models.DecimalField(max_digits=20, decimal_places=9, null=True, blank=True,
                                       help_text="The market (last 1-minute close) when it was sent")
    market_time = models.DateTimeField(null=True, blank=True, help_text="The market's time when it was sent")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Time in force 'day': not sent after the session closes")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a sender took it (state sending)")
    claimed_by = models.CharField(max_length=80, blank=True, help_text="host:pid of the sender that took it")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-bar_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "instrument", "bar_time", "action"],
                                    name="one_signal_per_bar_and_action"),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="signal_quantity_positive"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"]), models.Index(fields=["strategy", "state"])]

    def __str__(self):
        return self.key


class DeliveryAttempt(models.Model):
    """One POST of an order to the broker or of an alert to Discord (never the URL, only what came back)."""

    signal = models.ForeignKey(Signal, on_delete=models.CASCADE, related_name="delivery_attempts", null=True,
                               blank=True)
    notification = models.ForeignKey("trading.Notification", on_delete=models.CASCADE, related_name="delivery_attempts",
                                     null=True, blank=True)
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["signal", "notification", "number"]
        constraints = [
            models.UniqueConstraint(fields=["signal", "number"], name="one_attempt_number_per_signal"),
            models.UniqueConstraint(fields=["notification", "number"], name="one_attempt_number_per_notification"),
            models.CheckConstraint(condition=models.Q(signal__isnull=False, notification__isnull=True)
                                   | models.Q(signal__isnull=True, notification__isnull=False),
                                   name="attempt_of_one_signal_or_notification"),
        ]

    def __str__(self):
        return f"{self.signal.key if self.signal_id else self.notification} #{self.number} {self.outcome}"


class PaperOrder(models.Model):
    """An order of a paper strategy as the built-in paper broker took it (trading.execution.paper): the payload
    TradersPost would have got, and when. Its fill is the books' modelled fill, the backtest's fill model."""

    signal = models.OneToOneField(Signal, on_delete=models.CASCADE, related_name="paper_order")
    received_at = models.DateTimeField()
    payload = models.JSONField()

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self):
        return f"paper {self.signal.key}"
