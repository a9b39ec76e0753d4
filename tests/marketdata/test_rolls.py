"""Half a year of a generated market of all 12 roots through the hub, calendar rule (5 CME business
days before expiry), starting with no front known: the roll sessions equal a table worked out by
hand from CME's published last-trade rules, and every root has bars in every session."""
from datetime import date

import pandas as pd
import pandas_market_calendars as pmc
import pytest

from strategies.instruments import CONTRACT_SPECS
from tests.marketdata.hubrun import feed
from trading.marketdata.roll import FrontMonth
from trading.sim.market import generate

START, DAYS = date(2026, 10, 5), 172  # to the session of 2027-03-25
D = date

# Last trade dates (CME): ES/YM the 3rd Friday; 6A/6B/6M/6N/6S two business days before the 3rd Wednesday,
# 6C one; CL 3 business days before the 25th of the prior month (4 when the 25th is no business day); GC, SI,
# HG the 3rd-last business day. The roll session is 5 business days before (holidays skipped).
QUARTERLY_FX = [("Z6", D(2026, 12, 7)), ("H7", D(2027, 3, 8)), ("M7", None)]  # LTD Dec 14, Mar 15
ROLLS = {
    "ES": [("Z6", D(2026, 12, 11)), ("H7", D(2027, 3, 12)), ("M7", None)],  # LTD Dec 18, Mar 19
    "6C": [("Z6", D(2026, 12, 8)), ("H7", D(2027, 3, 9)), ("M7", None)],  # LTD Dec 15, Mar 16
    "CL": [("X6", D(2026, 10, 13)),  # LTD Oct 20 (Oct 25 is a Sunday)
           ("Z6", D(2026, 11, 13)),  # LTD Nov 20
           ("F7", D(2026, 12, 14)),  # LTD Dec 21 (Dec 25 is Christmas)
           ("G7", D(2027, 1, 12)),  # LTD Jan 20; MLK day Jan 18 is skipped
           ("H7", D(2027, 2, 12)),  # LTD Feb 22; Presidents' Day Feb 15 is skipped
           ("J7", D(2027, 3, 15)),  # LTD Mar 22
           ("K7", None)],
    "GC": [("V6", D(2026, 10, 21)),  # LTD Oct 28
           ("Z6", D(2026, 12, 21)),  # LTD Dec 29; Christmas skipped
           ("G7", D(2027, 2, 17)),  # LTD Feb 24; Presidents' Day skipped
           ("J7", None)],
    "SI": [("Z6", D(2026, 12, 21)), ("H7", D(2027, 3, 19)), ("K7", None)],  # LTD Dec 29, Mar 29 (Good Friday skipped)
}
ROLLS.update({"YM": ROLLS["ES"], "HG": ROLLS["SI"], **{r: QUARTERLY_FX for r in ("6A", "6B", "6M", "6N", "6S")}})


def expected_rolls(root):
    months = ROLLS[root]
    out = [("", root + months[0][0], START)]
    for (old, day), (new, _) in zip(months, months[1:]):
        out.append((root + old, root + new, day))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("year")
    roots = sorted(CONTRACT_SPECS)
    paths = generate(out, roots=roots, start=START, days=DAYS, seed=26, trades_per_minute=0.1)
    return feed([paths[r] for r in roots], {r: FrontMonth(r, "calendar", 5) for r in roots})


def test_the_hubs_roll_sessions_are_cmes_last_trade_dates_less_five_business_days(run):
    assert set(ROLLS) == set(CONTRACT_SPECS)
    got = {root: [(r.from_contract, r.to_contract, r.session_date) for r in run.rolls if r.root == root]
           for root in CONTRACT_SPECS}
    assert got == {root: expected_rolls(root) for root in CONTRACT_SPECS}
    assert run.hub.counters["no_front"] == 0


def test_every_root_has_bars_in_every_session_from_the_table_s_front(run):
    sessions = [d.date() for d in pmc.get_calendar("CME_TradeDate").valid_days(START, D(2027, 3, 25))]
    for root in CONTRACT_SPECS:
        daily = {b.ts.date(): b.contract for b in run.bars[root]["1d"]}
        assert sorted(daily) == sessions, f"{root}: a session without bars"
        rolls = expected_rolls(root)
        for session, contract in daily.items():
            front = [to for _, to, day in rolls if day <= session][-1]
            assert contract == front, (root, session)
        minutes = pd.Series([b.contract for b in run.bars[root]["1m"]])
        assert set(minutes) == {to for _, to, day in rolls}, root
