"""The hub process's database side (trading.marketdata.service): a roll is stamped with the market time
it was decided at, not the wall clock, and one that cannot be written yet is kept, in order, until it can."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from trading.marketdata.roll import Roll
from trading.marketdata.service import RollRecorder
from trading.models import ContractRoll, Instrument
from trading.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)  # the recorder closes old connections, as the hub does
MARKET_NOW = datetime(2026, 11, 13, 23, 0, 7, tzinfo=timezone.utc)  # a replay's time, years from the wall clock


def instrument(root):
    return Instrument.objects.create(root=root, name=root, point_value=Decimal("1000"), tick_size=Decimal("0.01"),
                                     tick_value=Decimal("10"), active_contract=f"{root}Z6")


def test_a_roll_is_stamped_with_the_market_time_and_moves_the_front():
    instrument("CL")
    record = RollRecorder(clock=lambda: int(MARKET_NOW.timestamp()) * 10**9)
    record(Roll("CL", "CLZ6", "CLF7", date(2026, 11, 16), "volume"))
    roll = ContractRoll.objects.get()
    assert roll.rolled_at == MARKET_NOW and (roll.from_contract, roll.to_contract) == ("CLZ6", "CLF7")
    assert Instrument.objects.get(root="CL").active_contract == "CLF7"
    assert Notification.objects.filter(title="Roll CL: CLZ6 → CLF7").count() == 1


def test_a_roll_not_written_is_kept_in_order_and_written_by_the_next_heartbeat():
    record = RollRecorder(clock=lambda: int(MARKET_NOW.timestamp()) * 10**9)
    with pytest.raises(Instrument.DoesNotExist):  # cannot be written yet: the hub logs it and goes on
        record(Roll("GC", "GCZ6", "GCG7", date(2026, 11, 16), "volume"))
    with pytest.raises(Instrument.DoesNotExist):  # a later roll queues behind it
        record(Roll("GC", "GCG7", "GCJ7", date(2027, 2, 10), "volume"))
    assert len(record.unrecorded) == 2 and not ContractRoll.objects.exists()
    instrument("GC")
    record.retry()
    assert not record.unrecorded
    assert list(ContractRoll.objects.order_by("session_date").values_list("to_contract", "rolled_at")) == [
        ("GCG7", MARKET_NOW), ("GCJ7", MARKET_NOW)]
    assert Instrument.objects.get(root="GC").active_contract == "GCJ7"  # applied in order
