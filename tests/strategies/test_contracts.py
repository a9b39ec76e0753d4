"""The listing and last-trade rules, against dates read off CME's published calendars (written here
by hand, not computed) and against Databento's real ESH1 definition."""
from datetime import date, datetime, timezone

import pytest

from strategies.contracts import LISTING_RULES, contract_months, contract_symbol, expiration, last_trade_date
from strategies.instruments import CONTRACT_SPECS
from tests.conftest import glbx_samples

LAST_TRADE = [
    # E-mini S&P and Dow: the 3rd Friday of March, June, September, December
    ("ES", 2026, 12, date(2026, 12, 18)), ("ES", 2027, 3, date(2027, 3, 19)), ("ES", 2021, 3, date(2021, 3, 19)),
    ("YM", 2026, 12, date(2026, 12, 18)),
    ("YM", 2027, 6, date(2027, 6, 17)),  # the 3rd Friday is Juneteenth (observed): the business day before
    # currencies: two business days before the 3rd Wednesday (the Canadian dollar: one)
    ("6A", 2026, 12, date(2026, 12, 14)), ("6B", 2027, 3, date(2027, 3, 15)), ("6M", 2027, 6, date(2027, 6, 14)),
    ("6N", 2026, 12, date(2026, 12, 14)), ("6S", 2027, 3, date(2027, 3, 15)),
    ("6C", 2026, 12, date(2026, 12, 15)), ("6C", 2027, 3, date(2027, 3, 16)),
    # crude: 3 business days before the 25th of the month before (4 when the 25th is not a business day)
    ("CL", 2026, 11, date(2026, 10, 20)),  # Oct 25 is a Sunday
    ("CL", 2026, 12, date(2026, 11, 20)),
    ("CL", 2027, 1, date(2026, 12, 21)),  # Dec 25 is Christmas
    ("CL", 2027, 2, date(2027, 1, 20)), ("CL", 2027, 3, date(2027, 2, 22)), ("CL", 2027, 4, date(2027, 3, 22)),
    ("CL", 2027, 5, date(2027, 4, 20)),  # Apr 25 is a Sunday
    # metals: the 3rd-last business day of the contract month
    ("GC", 2026, 10, date(2026, 10, 28)), ("GC", 2026, 12, date(2026, 12, 29)), ("GC", 2027, 2, date(2027, 2, 24)),
    ("SI", 2026, 12, date(2026, 12, 29)), ("SI", 2027, 3, date(2027, 3, 29)),  # Good Friday Mar 26 is no business day
    ("HG", 2027, 3, date(2027, 3, 29)), ("HG", 2027, 5, date(2027, 5, 26)),
]


@pytest.mark.parametrize("root, year, month, expected", LAST_TRADE)
def test_last_trade_dates_follow_cme_rules(root, year, month, expected):
    assert last_trade_date(root, year, month) == expected


def test_every_root_has_a_rule_and_the_real_cycles():
    assert set(LISTING_RULES) == set(CONTRACT_SPECS)
    cycles = {root: rule.months for root, rule in LISTING_RULES.items()}
    assert cycles["ES"] == cycles["YM"] == cycles["6A"] == cycles["6C"] == "HMUZ"
    assert (cycles["CL"], cycles["GC"], cycles["SI"], cycles["HG"]) == ("FGHJKMNQUVXZ", "GJMQVZ", "HKNUZ", "HKNUZ")


def test_contract_months_skip_what_expired_and_follow_the_cycle():
    assert [contract_symbol("ES", *m) for m in contract_months("ES", date(2026, 12, 19), 3)] == ["ESH7", "ESM7", "ESU7"]
    assert [contract_symbol("CL", *m) for m in contract_months("CL", date(2026, 11, 20), 2)] == ["CLZ6", "CLF7"]
    assert [contract_symbol("CL", *m) for m in contract_months("CL", date(2026, 11, 21), 2)] == ["CLF7", "CLG7"]
    assert [contract_symbol("GC", *m) for m in contract_months("GC", date(2026, 10, 29), 2)] == ["GCZ6", "GCG7"]


def test_expiration_is_the_closing_time_in_chicago_and_matches_databentos_esh1():
    from trading.marketdata.dbnfile import read_records

    definition = read_records(glbx_samples() / "test_data.definition.dbn.zst").records[0]
    assert definition.raw_symbol == contract_symbol("ES", 2021, 3)
    assert definition.expiration == int(expiration("ES", 2021, 3).timestamp()) * 10**9  # 08:30 CDT
    assert expiration("CL", 2026, 12) == datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)  # 13:30 CST
    assert expiration("6A", 2027, 3) == datetime(2027, 3, 15, 14, 16, tzinfo=timezone.utc)  # 09:16 CDT
