from unittest import mock

import pytest
from django.db import DatabaseError

from trading.models import KillSwitch, KillSwitchEvent, Notification
from trading.risk.decision import Kind, KillState, order_decision
from trading.risk.killswitch import current_mode, set_mode, state

pytestmark = pytest.mark.django_db


def test_default_is_off():
    assert current_mode() == "off"


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "Yes"])
def test_env_override_blocks_entries_whatever_the_database_says(monkeypatch, raw):
    monkeypatch.setenv("POLICY_KILLSWITCH", raw)
    assert current_mode() == "entries"
    decision = order_decision("buy", state())
    assert (decision.kind, decision.control) == (Kind.BLOCK_ENTRY, "env")
    assert decision.reason == "POLICY_KILLSWITCH: entries mode blocks entries"


@pytest.mark.parametrize("raw", ["false", "0", "no", ""])
def test_env_false_defers_to_database(monkeypatch, raw):
    monkeypatch.setenv("POLICY_KILLSWITCH", raw)
    set_mode("halt", "exchange outage", actor="ops")
    assert current_mode() == "halt"


def test_env_override_cannot_loosen_a_stricter_database_mode(monkeypatch):
    set_mode("halt", "outage", actor="ops")
    monkeypatch.setenv("POLICY_KILLSWITCH", "true")
    assert current_mode() == "halt"


def test_unknown_env_value_fails_closed(monkeypatch):
    monkeypatch.setenv("POLICY_KILLSWITCH", "maybe")
    assert current_mode() == "entries"


def test_unreadable_state_fails_closed():
    with mock.patch("trading.risk.killswitch.stored_mode", side_effect=DatabaseError("database is locked")):
        kill = state()
    assert (kill.mode, kill.control) == ("entries", "unreadable")
    decision = order_decision("buy", kill)
    assert decision.kind is Kind.BLOCK_ENTRY and "unreadable" in decision.reason
    assert order_decision("exit", kill).allowed


def test_each_mode_answers_entries_and_exits_with_a_kind():
    kinds = {mode: (order_decision("buy", KillState(mode)).kind, order_decision("exit", KillState(mode)).kind)
             for mode in ("off", "entries", "flatten", "halt")}
    assert kinds == {"off": (Kind.ALLOW, Kind.ALLOW), "entries": (Kind.BLOCK_ENTRY, Kind.ALLOW),
                     "flatten": (Kind.BLOCK_ENTRY, Kind.ALLOW), "halt": (Kind.BLOCK_ENTRY, Kind.HOLD_EXIT)}


def test_set_mode_records_who_when_why_and_alerts():
    event = set_mode("entries", "  testing the switch ", actor="alice")
    row = KillSwitch.objects.get(pk=1)
    assert (row.mode, row.changed_by, row.reason) == ("entries", "alice", "testing the switch")
    assert KillSwitchEvent.objects.get() == event and event.previous_mode == "off"
    alert = Notification.objects.get(kind="emergency")
    assert "off → entries" in alert.title and "alice" in alert.body


def test_set_mode_requires_a_reason_and_a_known_mode():
    with pytest.raises(ValueError, match="reason is required"):
        set_mode("halt", "  ", actor="bob")
    with pytest.raises(ValueError, match="unknown killswitch mode"):
        set_mode("panic", "why", actor="bob")
    assert not KillSwitchEvent.objects.exists()
