"""Validation lives on the models: each bad value is refused with a message naming the field."""
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from trading.models import Instrument, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db


def make_strategy(**overrides):
    values = dict(name="ibs_t", broker_webhook="${TRADERSPOST_IBS_A_WEBHOOK}",
                  discord_webhook="${DISCORD_WEBHOOK_URL}")
    values.update(overrides)
    return Strategy(**values)


def errors_of(obj) -> dict:
    with pytest.raises(ValidationError) as err:
        obj.full_clean()
    return err.value.message_dict


def test_default_strategy_is_valid(webhook_env):
    make_strategy().full_clean()


@pytest.mark.parametrize("field, value, words", [
    ("ibs_entry_low", 1.5, "1.5 is outside [0, 1]"),
    ("ibs_entry_high", -0.1, "-0.1 is outside [0, 1]"),
    ("ibs_entry_high", 0.0, "must be above ibs_entry_low"),
    ("ibs_exit_high", 0.7, "must be above ibs_exit_low"),
    ("ml_threshold", 1.2, "1.2 is outside [0, 1]"),
    ("entry_windows", "00:00-15:00,banana", "cannot parse 'banana'"),
    ("entry_windows", "15:00-10:00", "ends before it starts"),
    ("flat_time", "25:00", "cannot parse"),
    ("window_tz", "Mars/Olympus", "unknown time zone"),
    ("stop_loss_pct", 0.0, "must be > 0"),
    ("max_positions", 0, "greater than or equal to 1"),
    ("daily_stop_loss", Decimal("-5"), "greater than 0"),
    ("broker_webhook", "${BROKEN", "not a valid reference"),
    ("broker_webhook", "https://webhooks.traderspost.io/x/y", "literal URL"),
    ("discord_webhook", "$DISCORD", "not a valid reference"),
])
def test_bad_strategy_value_is_refused_naming_the_field(webhook_env, field, value, words):
    errors = errors_of(make_strategy(**{field: value}))
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors[field]


def test_unset_webhook_variable_is_refused_naming_the_variable(webhook_env, monkeypatch):
    monkeypatch.delenv("TRADERSPOST_IBS_A_WEBHOOK")
    errors = errors_of(make_strategy())
    assert errors["broker_webhook"] == [
        "environment variable TRADERSPOST_IBS_A_WEBHOOK is not set (referenced as ${TRADERSPOST_IBS_A_WEBHOOK})"]


def test_every_bad_field_is_reported_once_in_one_pass(webhook_env):
    errors = errors_of(make_strategy(ibs_entry_low=1.5, flat_time="noon", broker_webhook="${X", window_tz="Nowhere"))
    assert set(errors) == {"ibs_entry_low", "flat_time", "broker_webhook", "window_tz"}
    assert all(len(messages) == 1 for messages in errors.values()), errors


def test_validation_error_never_contains_the_secret(webhook_env):
    errors = errors_of(make_strategy(ibs_entry_low=2))
    assert all(secret not in str(errors) for secret in webhook_env.values())


@pytest.fixture
def cl():
    return Instrument.objects.create(root="CL", name="Crude oil", exchange="NYMEX", point_value=Decimal("1000"),
                                     tick_size=Decimal("0.01"), tick_value=Decimal("10"))


@pytest.mark.parametrize("field, value, words", [
    ("size", 0, "at least 1 contract"),
    ("commission_per_side", Decimal("-1"), "cannot be negative"),
    ("ml_threshold", 1.5, "between 0 and 1"),
    ("overrides", {"stop_loss_pctt": 1}, "unknown parameter"),
    ("overrides", {"ibs_entry_high": 2}, "outside [0, 1]"),
    ("overrides", {"max_bars_held": "many"}, "not a valid int"),
    ("overrides", [1, 2], "must be a JSON object"),
])
def test_bad_leg_value_is_refused_naming_the_field(webhook_env, cl, field, value, words):
    strategy = make_strategy()
    strategy.save()
    leg = StrategyInstrument(strategy=strategy, instrument=cl, **{field: value})
    errors = errors_of(leg)
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors[field]


def test_leg_overrides_change_effective_params(webhook_env, cl):
    strategy = make_strategy(stop_loss_pct=1.0)
    strategy.save()
    leg = StrategyInstrument(strategy=strategy, instrument=cl, overrides={"stop_loss_pct": "1.5"}, ml_threshold=0.6)
    leg.full_clean()
    params = leg.params()
    assert params.stop_loss_pct == 1.5 and params.ml_threshold == 0.6 and params.take_profit_pct == 1.0


def test_instrument_tick_value_must_match_spec():
    bad = Instrument(root="6C", name="Canadian dollar", point_value=Decimal("10000"), tick_size=Decimal("0.00005"),
                     tick_value=Decimal("5.00"))
    errors = errors_of(bad)
    assert "tick_value" in errors and "0.5000" in errors["tick_value"][0]


def test_instrument_root_must_be_capitals():
    errors = errors_of(Instrument(root="cl!", name="x", point_value=1, tick_size=1, tick_value=1))
    assert "root" in errors


def test_one_open_position_per_instrument_is_a_database_constraint(webhook_env, cl):
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from trading.models import Position, Signal

    strategy = make_strategy()
    strategy.save()
    now = timezone.now()

    def open_position(hour):
        sig = Signal.objects.create(key=f"k{hour}", strategy=strategy, instrument=cl, bar_time=now.replace(hour=hour),
                                    action="buy", quantity=1, signal_price=Decimal("70"), reason="entry")
        return Position.objects.create(strategy=strategy, instrument=cl, size=1, entry_time=now, signal_time=now,
                                       entry_price=Decimal("70"), commission_per_side=Decimal("1.25"),
                                       point_value=Decimal("1000"), entry_signal=sig)

    open_position(1)
    with pytest.raises(IntegrityError), transaction.atomic():
        open_position(2)


def test_signal_key_is_unique_per_bar_and_action(webhook_env, cl):
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from trading.models import Signal, signal_key

    strategy = make_strategy()
    strategy.save()
    bar = timezone.now().replace(minute=0, second=0, microsecond=0)
    key = signal_key("ibs_t", "CL", bar, "buy")
    Signal.objects.create(key=key, strategy=strategy, instrument=cl, bar_time=bar, action="buy", quantity=1,
                          signal_price=Decimal("70"), reason="entry")
    with pytest.raises(IntegrityError), transaction.atomic():
        Signal.objects.create(key=key + "x", strategy=strategy, instrument=cl, bar_time=bar, action="buy",
                              quantity=1, signal_price=Decimal("70"), reason="entry")


@pytest.mark.parametrize("template, contract, when, expires, ticker", [
    ("", "CLZ6", (2026, 11, 3), None, "CLZ6"),  # blank: the contract itself
    ("{contract}", "CLF7", (2026, 12, 9), None, "CLF7"),
    ("M{root}{month}{y}", "CLF7", (2026, 12, 9), None, "MCLF7"),
    ("{root}{month}{year}", "CLF7", (2026, 12, 9), None, "CLF2027"),  # the year after `when` ending in 7
    ("{root}{month}{year}", "CLH0", (2029, 12, 9), None, "CLH2030"),  # across a decade
    ("{root}{month}{year}", "CLZ6", (2016, 1, 4), (2026, 11, 20), "CLZ2026"),  # its expiration decides
])
def test_a_ticker_template_names_the_orders_contract(webhook_env, cl, template, contract, when, expires, ticker):
    from datetime import datetime, timezone

    if expires:
        cl.contracts.create(raw_symbol=contract, databento_id=1, expiration=datetime(*expires, tzinfo=timezone.utc))
    strategy = make_strategy()
    strategy.save()
    leg = StrategyInstrument.objects.create(strategy=strategy, instrument=cl, ticker=template)
    assert leg.broker_ticker(contract, datetime(*when, tzinfo=timezone.utc)) == ticker


@pytest.mark.parametrize("template, words", [
    ("CL", "does not name the contract"), ("CL1!", "does not name the contract"),
    ("CLZ6", "goes stale at the roll"), ("{root}", "does not name the contract"),
    ("{root}{month}", "does not name the contract"), ("{year:04}", "takes no format"),
    ("{root}{}", "unknown field"), ("{root", "is not a ticker template"),
])
def test_a_ticker_that_does_not_name_the_contract_is_refused(webhook_env, cl, template, words):
    strategy = make_strategy()
    strategy.save()
    errors = errors_of(StrategyInstrument(strategy=strategy, instrument=cl, ticker=template))
    assert any(words in message for message in errors["ticker"]), errors


def test_a_template_stored_past_the_form_still_sends_the_contract(webhook_env, cl):
    strategy = make_strategy()
    strategy.save()
    leg = StrategyInstrument.objects.create(strategy=strategy, instrument=cl)
    StrategyInstrument.objects.filter(pk=leg.pk).update(ticker="CL1!")  # past validation (a raw UPDATE)
    leg.refresh_from_db()
    assert leg.broker_ticker("CLZ6") == "CLZ6"  # never the continuous symbol
