"""The front month from definitions: the first choice, the calendar rule on real expirations, an
expired front, spreads told by their class, and where a restarted hub resumes."""
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import databento_dbn as dbn

from strategies.contracts import expiration
from trading.marketdata.definitions import ContractDef
from trading.marketdata.hub import Hub
from trading.marketdata.live import restart_point
from trading.marketdata.roll import FrontMonth, roll_session

NS = 10**9
CT = ZoneInfo("America/Chicago")


def contract(raw, root, year, month, kind="F", iid=None):
    return ContractDef(raw, iid or sum(map(ord, raw)), root, kind, int(expiration(root, year, month).timestamp()) * NS)


CL = [contract("CLZ6", "CL", 2026, 12), contract("CLF7", "CL", 2027, 1), contract("CLG7", "CL", 2027, 2)]
ES = [contract("ESZ6", "ES", 2026, 12), contract("ESH7", "ES", 2027, 3)]


def test_a_first_front_is_the_nearest_expiration_outside_the_roll_window():
    front = FrontMonth("ES", contracts=ES)
    roll = front.choose(date(2026, 12, 10))
    assert (roll.from_contract, roll.to_contract, front.active) == ("", "ESZ6", "ESZ6")
    front = FrontMonth("ES", contracts=ES)
    assert front.choose(date(2026, 12, 11)).to_contract == "ESH7"  # ESZ6 rolls from Dec 11 (5 days before the 18th)


def test_a_first_front_is_the_busiest_outright_of_the_last_session_of_data():
    front = FrontMonth("ES", contracts=ES, last_volume={"ESZ6": 100, "ESH7": 900})
    assert front.choose(date(2026, 12, 1)).to_contract == "ESH7"


def test_the_calendar_rule_reads_the_real_expiration_cl_rolls_weeks_before_the_third_friday():
    """CLZ6 stops trading on 2026-11-20: the calendar rule rolls on 2026-11-13, not in mid-December."""
    front = FrontMonth("CL", "calendar", 5, active="CLZ6", contracts=CL)
    assert roll_session(expiration("CL", 2026, 12), 5) == date(2026, 11, 13)
    assert front.session_closed(date(2026, 11, 12)) is None
    roll = front.session_closed(date(2026, 11, 13))
    assert (roll.from_contract, roll.to_contract, roll.session_date) == ("CLZ6", "CLF7", date(2026, 11, 13))
    assert "2026-11-20" in roll.reason


def test_an_expired_front_is_replaced_whatever_the_volume_says():
    front = FrontMonth("CL", "volume", 5, active="CLZ6", contracts=CL)
    front.observe("CLZ6", 50)
    assert front.session_closed(date(2026, 11, 20)) is None  # CLZ6 still trades on its last day
    front.observe("CLZ6", 50)
    roll = front.session_closed(date(2026, 11, 23))
    assert (roll.to_contract, "expired" in roll.reason) == ("CLF7", True)


def t(text):
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * NS


def definition(c: ContractDef, ts: int):
    return dbn.InstrumentDefMsg(1, c.instrument_id, ts, ts, 10_000_000, NS, c.raw_symbol, c.root, "FUT",
                                dbn.InstrumentClass(c.instrument_class), dbn.SecurityUpdateAction.ADD,
                                expiration=c.expiration_ns or 2**64 - 1, activation=0)


def trade(iid, ts, price=70 * NS, size=1):
    return dbn.TradeMsg(1, iid, ts, price, size, dbn.Action.TRADE, dbn.Side.BID, 0, ts, flags=0x80)


def mapping(c: ContractDef, ts):
    return dbn.SymbolMappingMsg(1, c.instrument_id, ts, dbn.SType.PARENT, f"{c.root}.FUT", dbn.SType.RAW_SYMBOL,
                                c.raw_symbol, ts, 2**63 - 1)


def new_hub(**fronts):
    bars, rolls, defined = [], [], []
    hub = Hub(fronts or {"CL": FrontMonth("CL")}, publish=lambda b: bars.append(b), on_roll=rolls.append,
              on_definition=defined.append)
    return hub, bars, rolls, defined


def test_a_fresh_hub_trades_the_front_from_its_first_trade_and_records_the_choice():
    hub, bars, rolls, defined = new_hub()
    t0 = t("2026-11-03T15:00")
    for c in reversed(CL):  # the order definitions come in does not matter
        hub.process(definition(c, t0 - 3600 * NS))
    hub.process(mapping(CL[0], t0))
    hub.process(trade(CL[0].instrument_id, t0))
    hub.process(trade(CL[0].instrument_id, t0 + 61 * NS))
    assert [(r.from_contract, r.to_contract, r.session_date) for r in rolls] == [("", "CLZ6", date(2026, 11, 3))]
    assert [b.contract for b in bars if b.timeframe == "1m"] == ["CLZ6"]
    assert hub.counters["back_month_dropped"] == 0 and hub.counters["trades"] == 2
    assert [c.raw_symbol for c in defined] == ["CLG7", "CLF7", "CLZ6"]


def test_a_spread_is_told_by_its_definition_not_its_symbol():
    """A user-defined spread's raw symbol has no '-': its class says it is a spread."""
    hub, bars, rolls, _ = new_hub(CL=FrontMonth("CL", active="CLZ6"))
    t0 = t("2026-11-03T15:00")
    odd = ContractDef("UD:1V: VT 1103", 99, "CL", "S")
    for c in (CL[0], odd):
        hub.process(definition(c, t0 - NS))
        hub.process(mapping(c, t0))
    hub.process(trade(99, t0, price=-20_000_000))
    hub.process(trade(CL[0].instrument_id, t0 + 1))
    assert hub.counters["spreads_dropped"] == 1 and hub.counters["trades"] == 1


def test_without_any_definition_the_busiest_outright_of_the_first_session_becomes_the_front():
    hub, bars, rolls, _ = new_hub()
    t0 = t("2026-11-03T15:00")
    for c in CL[:2]:
        hub.process(mapping(c, t0))
    hub.process(trade(CL[0].instrument_id, t0, size=5))
    hub.process(trade(CL[1].instrument_id, t0 + 1, size=2))
    assert hub.counters["no_front"] == 2 and not bars
    hub.process(trade(CL[0].instrument_id, t("2026-11-03T23:30")))  # the next session (17:00 CST = 23:00 UTC)
    assert [(r.to_contract, r.session_date) for r in rolls] == [("CLZ6", date(2026, 11, 4))]
    assert hub.counters["trades"] == 1


def test_only_heartbeats_move_the_hubs_clock():
    hub, _, _, _ = new_hub()
    hub.process(dbn.SystemMsg(t("2030-01-01T00:00"), "Subscription request 0 for trades data succeeded",
                              code=dbn.SystemCode.SUBSCRIPTION_ACK))
    hub.process(dbn.SystemMsg(t("2030-01-01T00:00"), "Finished trades replay", code=dbn.SystemCode.REPLAY_COMPLETED))
    assert hub.clock == 0
    assert (hub.counters["system_subscription_ack"], hub.counters["system_replay_completed"]) == (1, 1)
    hub.process(dbn.SystemMsg(t("2026-11-03T15:00"), "Heartbeat", code=dbn.SystemCode.HEARTBEAT))
    assert hub.clock == t("2026-11-03T15:00")


def chicago_ms(text):
    return int(datetime.fromisoformat(text).replace(tzinfo=CT).timestamp() * 1000)


def test_a_hub_restarted_inside_a_holiday_session_resumes_where_that_session_opened():
    """Thanksgiving 10:00 CT folds into Friday's trade date; its trading opened Wednesday 17:00 CT, not
    Thursday 17:00 (after the last bar). MLK day: Sunday 17:00, not Monday."""
    def start(text):
        return datetime.fromtimestamp(restart_point({"CL": chicago_ms(text), "6A": None}) / NS, CT)

    assert start("2026-11-26T10:00") == datetime(2026, 11, 25, 17, 0, tzinfo=CT)
    assert start("2027-01-18T10:00") == datetime(2027, 1, 17, 17, 0, tzinfo=CT)
    assert start("2026-11-27T10:00") == datetime(2026, 11, 25, 17, 0, tzinfo=CT)  # the day's whole trading
    assert start("2026-11-24T10:00") == datetime(2026, 11, 23, 17, 0, tzinfo=CT)
    assert restart_point({"CL": None}) is None


def test_a_front_that_expired_while_the_hub_was_away_is_replaced_at_its_first_trade():
    """Restarted after CLZ6's last trade with CLZ6 still the active contract: CLF7 is the front from the
    first trade on, not a session later (a whole session's trades would be dropped as a back month)."""
    hub, bars, rolls, _ = new_hub(CL=FrontMonth("CL", active="CLZ6", contracts=CL))
    t0 = t("2026-11-24T15:00")
    hub.process(mapping(CL[1], t0))
    hub.process(trade(CL[1].instrument_id, t0))
    assert [(r.from_contract, r.to_contract, r.session_date) for r in rolls] == [("CLZ6", "CLF7", date(2026, 11, 24))]
    assert "CLZ6 expired 2026-11-20" in rolls[0].reason
    assert hub.counters["trades"] == 1 and hub.counters["back_month_dropped"] == 0
