"""Strategies and the instruments each one trades, with every IBS parameter of the design.

Validation lives here (`clean`) and delegates parameter rules to strategies.params, so the
admin, load_demo and the worker refuse the same values with the same messages.
"""
import logging
import string
from decimal import Decimal
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from strategies import rolls
from strategies.params import DEFAULTS, PARAM_NAMES, IBSParams, ParameterError, param_errors
from trading.config import REFERENCE, ConfigError, reference_name, resolve
from trading.runtime_files import RuntimeFileError, runtime_file

from .instruments import Instrument

log = logging.getLogger(__name__)


TICKER_FIELDS = ("contract", "root", "month", "year", "y")


def ticker_for(template: str, contract: str, root: str, year: int | None, near_year: int | None = None) -> str:
    """A broker ticker from its template (checked by ticker_problem): {contract} CLZ6, {root} CL, {month} Z,
    {year} 2026, {y} 6 (the contract's expiration year; else the first year from `near_year` on that ends in
    the symbol's digit)."""
    month = contract[len(root)] if contract.startswith(root) and len(contract) > len(root) else ""
    digits = contract[len(root) + 1:]
    if year is None and near_year is not None and digits.isdigit():
        digit = int(digits) % 10
        year = near_year + (digit - near_year) % 10
    return template.format(contract=contract, root=root, month=month, year=year or "",
                           y=str(year)[-1] if year else digits[-1:])


def ticker_problem(template: str, root: str) -> str:
    """Why `template` cannot name each contract an order is for ('' when it can)."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        return f"{template!r} is not a ticker template ({exc}); use {{contract}}, {{root}}, {{month}}, {{year}}, {{y}}"
    if any(spec or conversion for _, spec, conversion in fields):
        return "a ticker field takes no format (no ':' or '!' inside the braces)"
    names = {name for name, _, _ in fields}
    if unknown := names - set(TICKER_FIELDS):
        return f"unknown field {{{sorted(unknown)[0]}}}: use {{contract}}, {{root}}, {{month}}, {{year}}, {{y}}"
    if "contract" not in names and not ("month" in names and names & {"year", "y"}):
        return (f"{template!r} does not name the contract (a bare root or a continuous symbol lets the broker pick "
                "it on its own, and a fixed contract goes stale at the roll): use {contract}, or e.g. "
                "M{root}{month}{y}")
    return ""


UNIT = [MinValueValidator(0.0, "must be between 0 and 1"), MaxValueValidator(1.0, "must be between 0 and 1")]


def strategy_param_errors(obj) -> dict[str, str]:
    """param_errors, also when window_tz names a directory of the time zone database ("America"):
    ZoneInfo raises IsADirectoryError there, which param_errors does not expect."""
    try:
        return param_errors(obj)
    except OSError:
        values = {name: getattr(obj, name) for name in PARAM_NAMES}
        errors = param_errors(SimpleNamespace(**{**values, "window_tz": "UTC"}))
        errors["window_tz"] = f"unknown time zone {obj.window_tz!r}"
        return errors


def validate_reference(value):
    try:
        reference_name(value, "value")
    except ConfigError as exc:
        raise ValidationError(str(exc).removeprefix("value: ")) from None


class StrategyQuerySet(models.QuerySet):
    def needing_worker(self):
        """Strategies that need a worker: the enabled ones, and any other still holding a position (its
        worker manages those exits, takes no entry, and is stopped once the strategy is flat)."""
        holding = models.Q(positions__state__in=("open", "closing", "exit_held"))
        return self.filter(models.Q(enabled=True) | holding).distinct()


class Strategy(models.Model):
    objects = StrategyQuerySet.as_manager()

    class Mode(models.TextChoices):
        LIVE = "live", "Live: orders go to the broker (TradersPost)"
        PAPER = "paper", "Paper: orders go to the built-in paper broker, never to TradersPost"

    class TimeInForce(models.TextChoices):
        DAY = "day", "day"
        GTC = "gtc", "gtc"
        OPG = "opg", "opg"
        CLS = "cls", "cls"
        IOC = "ioc", "ioc"
        FOK = "fok", "fok"

    name = models.CharField(max_length=40, unique=True, validators=[
        RegexValidator(r"^[a-z][a-z0-9_]*$", "use lower-case letters, digits and _ (e.g. ibs_a)")])
    enabled = models.BooleanField(default=False, help_text="Run a worker for this strategy. Off with positions open: "
                                                           "its worker keeps managing their exits, takes no entry")
    description = models.CharField(max_length=200, blank=True)
    mode = models.CharField(
        max_length=5, choices=Mode.choices, default=Mode.LIVE,
        help_text="Paper runs the same worker, signals, risk controls and outbox, and fills each order as the "
                  "backtest does; no order of it ever reaches TradersPost. Changed only while the strategy is flat")
    broker_webhook = models.CharField(
        max_length=100, blank=True, validators=[validate_reference],
        help_text="TradersPost webhook as a ${VAR} reference; the URL itself lives in .env (a paper strategy "
                  "needs none and never uses one)")
    discord_webhook = models.CharField(
        max_length=100, blank=True, validators=[validate_reference],
        help_text="Discord webhook as a ${VAR} reference (blank: no Discord alerts)")
    max_positions = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    daily_stop_loss = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("2000.00"),
        validators=[MinValueValidator(Decimal("0.01"), "must be greater than 0")],
        help_text="$ loss for the CME trading day at which new entries stop")
    heartbeat_file = models.CharField(
        max_length=200, blank=True,
        help_text="A .json file inside RUNTIME_DIR ({strategy} is replaced by the name); "
                  "blank: {strategy}_worker_heartbeat.json")
    heartbeat_interval = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3600)], help_text="seconds")
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.DAY)
    timeframe = models.CharField(max_length=3, choices=[("1h", "1 hour")], default="1h")

    # IBS parameters (names and defaults of DESIGN.md; overridable per instrument).
    ibs_entry_low = models.FloatField(default=DEFAULTS.ibs_entry_low)
    ibs_entry_high = models.FloatField(default=DEFAULTS.ibs_entry_high)
    ibs_exit_low = models.FloatField(default=DEFAULTS.ibs_exit_low)
    ibs_exit_high = models.FloatField(default=DEFAULTS.ibs_exit_high)
    stop_loss_pct = models.FloatField(default=DEFAULTS.stop_loss_pct)
    take_profit_pct = models.FloatField(default=DEFAULTS.take_profit_pct)
    max_bars_held = models.PositiveIntegerField(default=DEFAULTS.max_bars_held, validators=[MinValueValidator(1)])
    entry_windows = models.CharField(max_length=200, default=DEFAULTS.entry_windows)
    flat_time = models.CharField(max_length=8, default=DEFAULTS.flat_time, help_text="HH:MM or 'none'")
    window_tz = models.CharField(max_length=64, default=DEFAULTS.window_tz)
    ml_threshold = models.FloatField(default=DEFAULTS.ml_threshold)

    version = models.PositiveIntegerField(default=1, editable=False,
                                          help_text="Raised by every admin save: a save over a newer one is refused")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"

    def __str__(self):
        return f"{self.name} (paper)" if self.paper else self.name  # every list and page names paper as such

    @property
    def paper(self) -> bool:
        return self.mode == self.Mode.PAPER

    # --- parameters ---------------------------------------------------------------------------
    def params(self) -> IBSParams:
        """The strategy's IBS parameters; ParameterError names the first bad one."""
        return IBSParams(**{name: getattr(self, name) for name in PARAM_NAMES})

    def clean(self):
        super().clean()
        errors = {}
        if all(getattr(self, name) is not None for name in PARAM_NAMES):  # else clean_fields said so
            errors.update(strategy_param_errors(self))
        if self.heartbeat_file:
            try:
                self._heartbeat_target()
            except RuntimeFileError as exc:
                errors["heartbeat_file"] = str(exc)
        if self.mode == self.Mode.LIVE and not (self.broker_webhook or "").strip():
            errors["broker_webhook"] = "a live strategy needs its TradersPost webhook (a ${VAR} reference)"
        if self.pk and self.mode != type(self).objects.filter(pk=self.pk).values_list("mode", flat=True).first() \
                and self.positions.managed().exists():
            errors["mode"] = ("positions are open: flatten them (or let them close) before switching between live "
                              "and paper, or the broker would hold positions nobody manages")
        for field in ("broker_webhook", "discord_webhook"):
            value = getattr(self, field)
            if value and REFERENCE.match(value.strip()):  # a malformed one is reported by the field validator
                try:
                    resolve(value, field)
                except ConfigError as exc:
                    errors[field] = str(exc).removeprefix(f"{field}: ")
        if errors:
            raise ValidationError(errors)

    def _heartbeat_target(self):
        return runtime_file(self.heartbeat_file, suffix=".json", placeholders={"strategy": self.name})

    def heartbeat_path(self) -> str:
        """The heartbeat file; a value that slipped past the form is refused here too (the default is used)."""
        default = str(settings.RUNTIME_DIR / f"{self.name}_worker_heartbeat.json")
        if not self.heartbeat_file:
            return default
        try:
            return str(self._heartbeat_target())
        except RuntimeFileError as exc:
            log.error("strategy=%s heartbeat_file refused (%s); writing %s instead", self.name, exc, default)
            return default


class StrategyInstrument(models.Model):
    class ModelFailurePolicy(models.TextChoices):
        SKIP_ENTRIES = "skip_entries", "Skip entries until the model loads"
        TRADE_UNFILTERED = "trade_unfiltered", "Trade without the ML filter"

    class RollPolicy(models.TextChoices):
        EXIT = rolls.EXIT, "Exit the old contract at the roll"  # decided by strategies.rolls
        HOLD = rolls.HOLD, "Keep managing the old contract until its exit"

    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="legs")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="strategy_legs")
    enabled = models.BooleanField(default=True, help_text="Off with a position open: its exit is still managed, "
                                                           "no new entry")
    size = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1, "size must be at least 1 contract")])
    commission_per_side = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("1.25"),
        validators=[MinValueValidator(Decimal("0"), "commission cannot be negative")],
        help_text="$ per contract per side")
    ticker = models.CharField(max_length=32, blank=True,
                              help_text="Ticker TradersPost expects for the contract an order is for, as a template: "
                                        "{contract} (CLZ6), {root} (CL), {month} (Z), {year} (2026), {y} (6); "
                                        "blank: {contract}. It must name the contract: never a bare root or a "
                                        "continuous symbol, which the broker maps on its own")
    ml_enabled = models.BooleanField(default=True)
    ml_threshold = models.FloatField(null=True, blank=True, validators=UNIT,
                                     help_text="Blank: the strategy's threshold")
    ml_failure_policy = models.CharField(max_length=20, choices=ModelFailurePolicy.choices,
                                         default=ModelFailurePolicy.SKIP_ENTRIES)
    roll_policy = models.CharField(
        max_length=8, choices=RollPolicy.choices, default=RollPolicy.EXIT,
        help_text="A position open when the front rolls to the next contract: exit it (at the close of the old "
                  "contract's first bar after the roll; the strategy may enter the new front on its own signal), "
                  "or keep managing it on the old contract's own prices until its exit. Stop, target and P&L only "
                  "ever use the position's own contract")
    overrides = models.JSONField(default=dict, blank=True,
                                 help_text='Parameter overrides, e.g. {"stop_loss_pct": 1.5}')
    version = models.PositiveIntegerField(default=1, editable=False,
                                          help_text="Raised by every admin save: a save over a newer one is refused")

    class Meta:
        ordering = ["strategy__name", "instrument__root"]
        constraints = [models.UniqueConstraint(fields=["strategy", "instrument"], name="one_leg_per_instrument")]
        verbose_name = "strategy instrument"

    def __str__(self):
        return f"{self.strategy_id and self.strategy.name}/{self.instrument_id and self.instrument.root}"

    def params(self) -> IBSParams:
        overrides = dict(self.overrides or {})
        if self.ml_threshold is not None:
            overrides["ml_threshold"] = self.ml_threshold
        return self.strategy.params().with_overrides(overrides)

    def clean(self):
        super().clean()
        if self.ticker and self.instrument_id and (problem := ticker_problem(self.ticker, self.instrument.root)):
            raise ValidationError({"ticker": problem})
        if not isinstance(self.overrides, dict):
            raise ValidationError({"overrides": 'must be a JSON object, e.g. {"stop_loss_pct": 1.5}'})
        if self.strategy_id is None or strategy_param_errors(self.strategy):
            return  # the strategy's own form reports its bad parameters
        try:
            self.params()
        except ParameterError as exc:
            # The leg's own ml_threshold wins over the overrides: a bad one is that field's error.
            field = "ml_threshold" if exc.param == "ml_threshold" and self.ml_threshold is not None else "overrides"
            raise ValidationError({field: f"parameter {exc}"}) from None
        except (TypeError, ValueError) as exc:
            raise ValidationError({"overrides": str(exc)}) from None
        except OSError:  # {"window_tz": "America"}: a directory of the time zone database
            raise ValidationError({"overrides": f"parameter window_tz: unknown time zone "
                                                f"{self.overrides.get('window_tz')!r}"}) from None

    def broker_ticker(self, contract: str, when=None) -> str:
        """The ticker of an order for `contract` (the contract of the bar it was decided on, at `when`)."""
        root = self.instrument.root
        if not contract:
            log.error("order of %s without a contract: the root is sent as its ticker", self)
            return root
        if problem := ticker_problem(self.ticker, root) if self.ticker else "":  # stored past the form
            log.error("ticker of %s refused (%s): the contract %s is sent as its ticker", self, problem, contract)
            return contract
        template = self.ticker or "{contract}"
        # The expiration is read only for a template that names a year (read on every order's path).
        expires = self.instrument.contracts.filter(raw_symbol=contract).values_list("expiration", flat=True).first() \
            if "{year}" in template or "{y}" in template else None
        return ticker_for(template, contract, root, expires.year if expires else None,
                          when.year if when else None)
