"""Instruments: CME futures roots with their contract specifications and roll rule, their listed
contracts (from Databento's instrument definitions) and the rolls between them.

The point value here prices every trade; it must match strategies/instruments.py for the
known roots (validation refuses a tick value that disagrees with tick size × point value).
"""
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

POSITIVE = MinValueValidator(Decimal("0.000000001"), "must be greater than 0")


class Instrument(models.Model):
    class RollRule(models.TextChoices):
        VOLUME = "volume", "Volume (front = busiest month)"
        CALENDAR = "calendar", "Calendar (days before expiry)"

    root = models.CharField(
        max_length=8,
        unique=True,
        validators=[RegexValidator(r"^[A-Z0-9]{1,6}$", "use the CME root in capitals, e.g. CL or 6A")],
    )
    name = models.CharField(max_length=64)
    exchange = models.CharField(max_length=16, default="CME")
    dataset = models.CharField(max_length=32, default="GLBX.MDP3")
    point_value = models.DecimalField(max_digits=18, decimal_places=6, validators=[POSITIVE],
                                      help_text="$ per 1.0 price move")
    tick_size = models.DecimalField(max_digits=18, decimal_places=9, validators=[POSITIVE])
    tick_value = models.DecimalField(max_digits=12, decimal_places=4, validators=[POSITIVE])
    currency = models.CharField(max_length=3, default="USD")
    active_contract = models.CharField(max_length=16, blank=True,
                                       help_text="Front contract traded now, e.g. CLZ6; set by the hub on roll")
    roll_rule = models.CharField(max_length=16, choices=RollRule.choices, default=RollRule.VOLUME)
    roll_days_before_expiry = models.PositiveSmallIntegerField(
        default=5, help_text="Calendar rule: roll this many CME business days before the front month expires")
    version = models.PositiveIntegerField(default=1, editable=False,
                                          help_text="Raised by every admin save: a save over a newer one is refused")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["root"]

    def __str__(self):
        return self.root

    def clean(self):
        super().clean()
        if self.root:
            self.root = self.root.strip().upper()
        if self.point_value and self.tick_size and self.tick_value:
            expected = (self.point_value * self.tick_size).quantize(Decimal("0.0001"))
            if expected != Decimal(self.tick_value).quantize(Decimal("0.0001")):
                raise ValidationError({"tick_value": (
                    f"tick value {self.tick_value} disagrees with tick size {self.tick_size} × point value "
                    f"{self.point_value} = {expected}; check the contract specification")})


class ContractRoll(models.Model):
    """A change of the front contract of a root, as decided by the hub (audit trail)."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="rolls")
    from_contract = models.CharField(max_length=16, blank=True)
    to_contract = models.CharField(max_length=16)
    rolled_at = models.DateTimeField()
    session_date = models.DateField()
    reason = models.CharField(max_length=200)

    class Meta:
        ordering = ["-rolled_at"]
        constraints = [models.UniqueConstraint(fields=["instrument", "session_date", "to_contract"],
                                               name="one_roll_per_contract_and_day")]

    def __str__(self):
        return f"{self.instrument.root}: {self.from_contract or '—'} → {self.to_contract}"


class Contract(models.Model):
    """A listed outright of a root, as its Databento instrument definition describes it (spreads are
    never stored: they never trade here). Written by the hub and by warmup; read at the hub's start."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="contracts")
    raw_symbol = models.CharField(max_length=32)
    databento_id = models.PositiveBigIntegerField("instrument id", help_text="Databento instrument_id")
    instrument_class = models.CharField(max_length=1, default="F", help_text="F: future (outright)")
    expiration = models.DateTimeField(null=True, blank=True, help_text="When trading terminates (UTC)")
    activation = models.DateTimeField(null=True, blank=True)
    last_session = models.DateField(null=True, blank=True, help_text="Session of last_session_volume")
    last_session_volume = models.BigIntegerField(
        default=0, help_text="Contracts traded in the last session of data (warmup); picks a first front")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instrument", "expiration", "raw_symbol"]
        constraints = [models.UniqueConstraint(fields=["instrument", "raw_symbol"], name="one_contract_per_symbol")]
        indexes = [models.Index(fields=["instrument", "expiration"])]

    def __str__(self):
        return self.raw_symbol

    def roll_date(self):
        """The calendar rule's first session of the next contract (the instrument's N business days)."""
        if self.expiration is None:
            return None
        from trading.marketdata.roll import roll_session

        return roll_session(self.expiration, self.instrument.roll_days_before_expiry)
