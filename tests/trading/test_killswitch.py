from unittest import mock

import pytest
from django.db import DatabaseError

from trading.models import KillSwitch, KillSwitchEvent, Notification
from trading.risk.killswitch import allows, current_mode, set_mode

pytestmark = pytest.mark.django_db


def test_default_is_off():
    assert current_mode() == "off"


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "Yes"])
def test_env_override_blocks_entries_whatever_the_database_says(monkeypatch, raw):
    monkeypatch.setenv("POLICY_KILLSWITCH", raw)
    assert current_mode() == "entries"
    assert allows(current_mode(), "buy") == (False, "killswitch: entries mode blocks entries")


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
    with mock.patch.object(KillSwitch.objects, "filter", side_effect=DatabaseError("database is locked")):
        assert current_mode() == "entries"


def test_entries_mode_blocks_entries_but_not_exits():
    assert allows("entries", "buy")[0] is False
    assert allows("entries", "exit") == (True, "")
    assert allows("flatten", "exit") == (True, "")
    assert allows("halt", "exit")[0] is False
    assert allows("off", "buy") == (True, "")


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
