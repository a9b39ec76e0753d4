"""Fuzzing the admin's change forms with arbitrary values, through the real form (GET, edit, POST).

For every example: never a 500; either the form saved (302) and the stored row passes full_clean()
and yields its IBS parameters, or the form came back (200) with an error on the field that was
changed (or its partner, e.g. ibs_entry_high for ibs_entry_low) and nothing in the database moved.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from collections import Counter
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.forms.models import model_to_dict
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strategies.params import PARAM_NAMES
from tests.adminforms import form_data, page_errors
from trading.models import Instrument, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=50, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the form as a browser would submit it ----------------------------------------------------

def check_post(client, url, form_id, changes, *, snapshot, validate_saved, partners=None):
    """POST the form with `changes`; assert saved-and-valid or refused-with-a-named-error-and-unchanged."""
    data = form_data(client, url, form_id)
    for name in changes:
        assert name in data, f"{name} is not a field of {form_id}"
    data.update(changes)
    data["_save"] = "Save"
    before = snapshot()
    response = client.post(url, data)  # an exception in the view is raised here: a 500 fails the test
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        validate_saved()
        return "saved"
    errors, errornote = page_errors(response)
    assert errornote, "form shown again without 'Please correct the error'"
    assert errors and all(all(m.strip() for m in msgs) and msgs for msgs in errors.values()), errors
    allowed = set(changes)
    for name in changes:
        allowed |= set((partners or {}).get(name, ()))
    assert set(errors) <= allowed, f"errors {errors} for changes {sorted(changes)}"
    assert snapshot() == before, "a refused form changed the database"
    return "refused"


# --- values ------------------------------------------------------------------------------------

EDGE_NUMBERS = ["", " ", "0", "-0", "1", "0.5", "0.2", "1.0", "-1", "100", "99.999", "1000", "1000.0001", "1e3",
                "1E-7", "0x10", "1_000", "١٢", "½", "NaN", "nan", "sNaN", "Infinity", "-inf", "1,5", " 0.5 ", "9" * 30,
                "9" * 400, "1e309", "-1e309", "1e-400", "32767", "32768", "65535", "2147483647", "2147483648",
                "9223372036854775807", "9223372036854775808", "0.001", "0.005", "0.01", "9999999999.99",
                "999999999999.99", "1e12", "\x00", "1\x00", "0.5 0.6", "+0.5", "--1", "1e", ".5", "5."]
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-2, max_value=120).map(lambda f: f"{f:.4g}"),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(EDGE_NUMBERS),
    st.text(max_size=12),
)
unit_numbers = st.one_of(numbers, st.floats(min_value=0, max_value=1).map(lambda f: f"{f:.3f}"))

clock = st.tuples(st.integers(0, 30), st.integers(0, 75)).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")
windows = st.one_of(
    st.lists(st.tuples(clock, clock).map("-".join), min_size=1, max_size=4).map(",".join),
    st.text(alphabet="0123456789:-, ", max_size=30),
    st.text(max_size=20),
    st.sampled_from(["", "none", "00:00-24:00", "9-5", "24:00-24:00", "00:00-15:00,", ",", "23:59-24:00",
                     "１０:00-12:00", "00:00-01:00," * 20, "17:00-16:00", "00:00 - 15:00 , 17:00 - 24:00"]),
)
flat_times = st.one_of(clock, st.text(max_size=10),
                       st.sampled_from(["none", "NONE", " none ", "", "24:00", "15:00:00", "3pm", "9:5", "-1:00"]))
time_zones = st.one_of(
    st.sampled_from(["UTC", "America/Chicago", "Europe/London", "Etc/GMT+5", "US/Eastern", "utc", "Factory",
                     "posixrules", "America", "Europe", "Etc", "zone.tab", "tzdata.zi", "__init__.py", "__pycache__",
                     "../etc/passwd", "/etc/localtime", "UTC/", "Etc/../UTC", "", " ", "\x00", "a" * 65]),
    st.text(max_size=16))
references = st.one_of(
    st.sampled_from(["${TRADERSPOST_IBS_A_WEBHOOK}", "${TRADERSPOST_IBS_B_WEBHOOK}", "${DISCORD_WEBHOOK_URL}",
                     "${lower}", "${1X}", "$VAR", "$TRADERSPOST_IBS_A_WEBHOOK", "${}", "${PINEOPS_FUZZ_UNSET}",
                     "${PINEOPS_FUZZ_EMPTY}", "", " ", "http://127.0.0.1/x", "https://discord.com/api/webhooks/1/abc",
                     " ${TRADERSPOST_IBS_A_WEBHOOK} ", "${TRADERSPOST_IBS_A_WEBHOOK}x", "${A}${B}", "${" + "A" * 120 + "}",
                     "{TRADERSPOST_IBS_A_WEBHOOK}", "${TRADERSPOST_IBS_A_WEBHOOK", "$(id)", "${PATH}", "${_}"]),
    st.from_regex(r"\A\$\{[A-Za-z0-9_]{0,12}\}\Z"),
    st.text(max_size=30))



def fuzz(valid, *anything):
    """Half plausible values (so forms also save), half anything: `numbers` and the like."""
    return st.one_of(valid, st.one_of(*anything))


def fmt(f: float) -> str:
    return f"{f:.6g}"


STRATEGY_FIELDS = {
    **{name: fuzz(st.floats(0, 1).map(fmt), unit_numbers)
       for name in ("ibs_entry_low", "ibs_entry_high", "ibs_exit_low", "ibs_exit_high", "ml_threshold")},
    "stop_loss_pct": fuzz(st.floats(0.01, 99.9).map(fmt), numbers),
    "take_profit_pct": fuzz(st.floats(0.01, 1000).map(fmt), numbers),
    **{name: fuzz(st.integers(1, 60).map(str), numbers)
       for name in ("max_bars_held", "max_positions", "heartbeat_interval")},
    "daily_stop_loss": fuzz(st.decimals("0.01", "1000000", places=2).map(str), numbers),
    "entry_windows": windows, "flat_time": flat_times,
    "window_tz": fuzz(st.sampled_from(["UTC", "America/Chicago", "Europe/London", "Asia/Tokyo"]), time_zones),
    "broker_webhook": fuzz(st.sampled_from(["${TRADERSPOST_IBS_A_WEBHOOK}", "${TRADERSPOST_IBS_B_WEBHOOK}"]),
                           references),
    "discord_webhook": fuzz(st.sampled_from(["${DISCORD_WEBHOOK_URL}", ""]), references),
    "time_in_force": st.sampled_from(["day", "gtc", "ioc", "DAY", "xyz", ""]),
    "name": st.one_of(st.sampled_from(["ibs_a", "ibs_b", "ibs_c", "IBS", "a" * 41, "", "1x"]), st.text(max_size=10)),
    # The legs inline of the strategy's page.
    "legs-0-size": fuzz(st.integers(1, 10).map(str), numbers),
    "legs-0-commission_per_side": fuzz(st.decimals("0", "20", places=2).map(str), numbers),
    "legs-0-ml_threshold": fuzz(st.just(""), unit_numbers),
}
STRATEGY_PARTNERS = {"ibs_entry_low": ["ibs_entry_high"], "ibs_entry_high": ["ibs_entry_low"],
                     "ibs_exit_low": ["ibs_exit_high"], "ibs_exit_high": ["ibs_exit_low"]}

override_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=2),
    st.integers(-(10**30), 10**30), st.integers(0, 20), st.text(max_size=10), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["America", "UTC", "00:00-12:00", "none", "15:00", "0.5", "7", "Europe/London"]))
overrides = st.one_of(
    st.dictionaries(st.sampled_from([*PARAM_NAMES, "bogus", ""]), override_values, max_size=3).map(json.dumps),
    st.sampled_from(['{"max_bars_held": 1e999}', '{"max_bars_held": -1e999}', '{"max_bars_held": 1e300}',
                     '{"window_tz": "America"}', '{"window_tz": "zone.tab"}', '{"ml_threshold": 0.7}', "[]", '"x"',
                     "1", "null", "", "{", '{"stop_loss_pct": "abc"}', "NaN", '{"max_bars_held": "1e999"}',
                     '{"ibs_entry_low": 0.5, "ibs_entry_high": 0.4}', '{"flat_time": null}', "{}", " {} "]),
    st.text(max_size=20))

LEG_FIELDS = {
    "size": fuzz(st.integers(1, 10).map(str), numbers),
    "commission_per_side": fuzz(st.decimals("0", "20", places=2).map(str), numbers),
    "ml_threshold": fuzz(st.one_of(st.just(""), st.floats(0, 1).map(fmt)), unit_numbers),
    "overrides": fuzz(st.sampled_from(["{}", '{"stop_loss_pct": 1.5}', '{"max_bars_held": 4, "flat_time": "none"}']),
                      overrides),
    "ticker": st.one_of(st.text(max_size=40), st.sampled_from(
        ["", "CL", "CL1!", "x" * 25, "{contract}", "{root}{month}{y}", "MCL{month}{year}", "{year:999}", "{contract!r}",
         "{0}", "{contract", "{expiry}", "{root}"])),
    "roll_policy": st.sampled_from(["exit", "hold", "bogus", ""]),
    "ml_failure_policy": st.sampled_from(["skip_entries", "trade_unfiltered", "bogus", ""]),
    "instrument": st.sampled_from(["root:ES", "root:GC", "root:CL", "root:6A", "999999", "abc", ""]),
}

decimals_text = st.decimals(min_value="0.000001", max_value="100000", places=6).map(str)
INSTRUMENT_FIELDS = {
    "point_value": numbers, "tick_size": numbers, "tick_value": numbers,
    "roll_days_before_expiry": fuzz(st.integers(0, 30).map(str), numbers),
    "root": st.one_of(st.sampled_from(["CL", "GC", "cl", "ZZ", "TOOLONG7", "", "6A"]), st.text(max_size=8)),
    "roll_rule": st.sampled_from(["volume", "calendar", "bogus"]),
    "currency": st.one_of(st.sampled_from(["USD", "EUR", "", "USDX"]), st.text(max_size=4)),
}


def changes_of(fields: dict, max_size=4):
    return st.lists(st.one_of(*[st.tuples(st.just(name), values) for name, values in fields.items()]),
                    min_size=1, max_size=max_size).map(dict)


# Contract specifications that agree (tick value = tick size × point value), so saves happen too.
consistent_spec = st.tuples(decimals_text, st.decimals(min_value="0.000000001", max_value="10", places=9)).map(
    lambda t: {"point_value": t[0], "tick_size": str(t[1]),
               "tick_value": str((Decimal(t[0]) * t[1]).quantize(Decimal("0.0001")))})


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def staff(client, django_user_model, webhook_env, settings, redis_prefix, monkeypatch):
    settings.REDIS_PREFIX = redis_prefix
    monkeypatch.setenv("PINEOPS_FUZZ_EMPTY", "")
    monkeypatch.delenv("PINEOPS_FUZZ_UNSET", raising=False)
    call_command("load_demo", verbosity=0)
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-for-tests-only"))
    return client


def in_rollback(fn):
    """Run one example in a transaction that is rolled back: each example starts from the demo rows."""
    with transaction.atomic():
        result = fn()
        transaction.set_rollback(True)
    return result


def strategy_snapshot(pk):
    s = Strategy.objects.get(pk=pk)
    return (model_to_dict(s), s.updated_at, [model_to_dict(leg) for leg in s.legs.order_by("pk")])


def validate_strategy(pk):
    s = Strategy.objects.get(pk=pk)
    s.full_clean()
    s.params()
    for leg in s.legs.all():
        leg.full_clean()
        leg.params()


# --- tests ---------------------------------------------------------------------------------------
# Each test runs its examples through an inner @given function, then checks that the form was both
# saved and refused at least once: the properties held on both branches, not vacuously on one.

def test_strategy_form_fuzz(staff):
    pk = Strategy.objects.get(name="ibs_a").pk
    url = reverse("admin:trading_strategy_change", args=[pk])
    seen = Counter()

    @FUZZ
    @given(changes=changes_of(STRATEGY_FIELDS))
    @example(changes={"max_bars_held": "6", "window_tz": "America/Chicago"})  # saved
    @example(changes={"window_tz": "America"})  # a directory of the tz database: was a 500
    @example(changes={"broker_webhook": "${lower}", "discord_webhook": "${PINEOPS_FUZZ_EMPTY}"})
    @example(changes={"legs-0-ml_threshold": "2.0"})  # was also reported on legs-0-overrides
    @example(changes={"legs-0-commission_per_side": "sNaN"})  # comparing a signalling NaN was a 500
    @example(changes={"daily_stop_loss": "-Infinity"})
    def fuzz(changes):
        seen[in_rollback(lambda: check_post(
            staff, url, "strategy_form", changes, snapshot=lambda: strategy_snapshot(pk),
            validate_saved=lambda: validate_strategy(pk), partners=STRATEGY_PARTNERS))] += 1

    fuzz()
    assert seen["saved"] and seen["refused"], seen


def test_strategy_instrument_form_fuzz(staff):
    leg = StrategyInstrument.objects.get(strategy__name="ibs_a", instrument__root="CL")
    url = reverse("admin:trading_strategyinstrument_change", args=[leg.pk])
    roots = {f"root:{i.root}": str(i.pk) for i in Instrument.objects.all()}
    seen = Counter()

    def snapshot():
        return model_to_dict(StrategyInstrument.objects.get(pk=leg.pk)), strategy_snapshot(leg.strategy_id)

    def validate_saved():
        saved = StrategyInstrument.objects.get(pk=leg.pk)
        saved.full_clean()
        saved.params()
        ticker = saved.broker_ticker("CLF7", datetime(2026, 12, 1, tzinfo=timezone.utc))  # a saved template renders
        assert ticker and ticker != "CL", ticker

    @FUZZ
    @given(changes=changes_of(LEG_FIELDS, max_size=3))
    @example(changes={"size": "2", "overrides": '{"stop_loss_pct": 1.5}'})  # saved
    @example(changes={"overrides": '{"window_tz": "America"}'})  # was a 500
    @example(changes={"ml_threshold": "2.0"})  # was also reported on overrides
    @example(changes={"instrument": "root:6A"})  # another leg of the strategy trades 6A
    def fuzz(changes):
        changes = {k: roots.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
        seen[in_rollback(lambda: check_post(
            staff, url, "strategyinstrument_form", changes, snapshot=snapshot, validate_saved=validate_saved,
            partners={"instrument": ["__all__"]}))] += 1

    fuzz()
    assert seen["saved"] and seen["refused"], seen


def test_instrument_form_fuzz(staff):
    pk = Instrument.objects.get(root="CL").pk
    url = reverse("admin:trading_instrument_change", args=[pk])
    spec = ("point_value", "tick_size", "tick_value")
    seen = Counter()

    def snapshot():
        i = Instrument.objects.get(pk=pk)
        return model_to_dict(i), i.updated_at

    def validate_saved():
        Instrument.objects.get(pk=pk).full_clean()
        for leg in StrategyInstrument.objects.filter(instrument_id=pk):
            leg.full_clean()
            leg.params()

    @FUZZ
    @given(changes=st.one_of(changes_of(INSTRUMENT_FIELDS, max_size=3),
                             st.tuples(consistent_spec, changes_of(INSTRUMENT_FIELDS, max_size=1)).map(
                                 lambda t: {**t[1], **t[0]})))
    @example(changes={"roll_days_before_expiry": "7"})  # saved
    @example(changes={"tick_value": "0.5"})  # disagrees with tick size × point value
    def fuzz(changes):
        seen[in_rollback(lambda: check_post(
            staff, url, "instrument_form", changes, snapshot=snapshot, validate_saved=validate_saved,
            partners={name: ["tick_value"] for name in spec}))] += 1

    fuzz()
    assert seen["saved"] and seen["refused"], seen
