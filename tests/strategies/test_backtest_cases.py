"""Hand-computed cases of the fill model (DESIGN.md "Backtest fill model")."""
import pytest

from strategies.backtest import run
from tests.strategies.builders import MID, MONDAY, leg

SIGNAL = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1 → entry at the next open


def trades(*legs, **kw):
    return run(list(legs), **kw).trades


def only(result):
    assert len(result) == 1, result
    return result[0]


def test_ibs_exit_fills_at_next_open_with_pnl():
    t = only(trades(leg("CL", [SIGNAL, (99.5, 99.9, 99.1, 99.8), (99.7, 99.9, 99.6, 99.8), MID])))
    assert (t["entry_time"], t["entry_price"]) == ("2026-11-02T01:00:00Z", 99.5)
    assert (t["exit_time"], t["exit_price"], t["exit_reason"]) == ("2026-11-02T02:00:00Z", 99.7, "ibs_exit")
    assert t["ibs_entry"] == pytest.approx(0.1) and t["ibs_exit"] == pytest.approx(0.875)
    assert t["pnl"] == pytest.approx((99.7 - 99.5) * 1000 - 2.5)
    assert t["pnl_percent"] == pytest.approx(0.2 / 99.5 * 100)


def test_stop_touched_inside_a_bar_exits_at_the_stop():
    t = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 99.9, 100.1), (99.8, 99.9, 98.9, 99.5), MID])))
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == ("stop_loss", pytest.approx(99.0), "2026-11-02T02:00:00Z")


def test_gap_through_stop_exits_at_the_open():
    t = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 99.9, 100.1), (98.0, 98.5, 97.5, 98.2), MID])))
    assert (t["exit_reason"], t["exit_price"]) == ("stop_loss", 98.0)


def test_target_inside_a_bar_and_gap_through_target():
    inside = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 99.9, 100.1), (100.2, 101.3, 100.1, 100.5), MID])))
    assert (inside["exit_reason"], inside["exit_price"]) == ("take_profit", pytest.approx(101.0))
    gap = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 99.9, 100.1), (101.5, 101.8, 101.2, 101.4), MID])))
    assert (gap["exit_reason"], gap["exit_price"]) == ("take_profit", 101.5)


def test_stop_and_target_touched_in_one_bar_is_the_stop():
    t = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 99.9, 100.1), (100.0, 101.5, 98.5, 100.0), MID])))
    assert (t["exit_reason"], t["exit_price"]) == ("stop_loss", pytest.approx(99.0))


def test_stop_can_hit_on_the_fill_bar_itself():
    t = only(trades(leg("CL", [SIGNAL, (100.0, 100.2, 98.8, 99.5), MID])))
    assert (t["exit_reason"], t["entry_time"], t["exit_time"]) == ("stop_loss", "2026-11-02T01:00:00Z", "2026-11-02T01:00:00Z")
    assert t["bars_held"] == 1


def test_max_bars_counts_the_fill_bar_as_one():
    t = only(trades(leg("CL", [SIGNAL] + [MID] * 5, max_bars_held=3)))
    # fill at 01:00 (bar 1), held 01,02,03 → decided at the close of 03:00, out at the 04:00 open
    assert (t["exit_reason"], t["exit_time"], t["bars_held"]) == ("max_bars", "2026-11-02T04:00:00Z", 3)


def test_flat_time_exits_after_the_flat_bar():
    start = MONDAY.replace(hour=12)
    t = only(trades(leg("CL", [SIGNAL, MID, MID, MID, MID, MID], start=start)))
    # signal 12:00, fill 13:00, the 15:00 bar is the flat bar → out at the next bar's open (16:00)
    assert (t["exit_reason"], t["exit_time"]) == ("flat_time", "2026-11-02T16:00:00Z")
    assert only(trades(leg("CL", [SIGNAL, MID, MID, MID, MID, MID], start=start, flat_time="none")))["exit_reason"] == "end_of_data"


def test_end_of_data_exits_at_the_last_close():
    t = only(trades(leg("CL", [SIGNAL, MID, (100.0, 100.4, 99.6, 100.1)])))
    assert (t["exit_reason"], t["exit_price"], t["exit_time"]) == ("end_of_data", 100.1, "2026-11-02T02:00:00Z")


def test_no_entry_outside_the_entry_windows():
    for hour in (15, 16):
        assert trades(leg("CL", [SIGNAL, MID, MID], start=MONDAY.replace(hour=hour))) == []
    assert len(trades(leg("CL", [SIGNAL, MID, MID], start=MONDAY.replace(hour=17)))) == 1


def test_no_signal_when_high_equals_low():
    assert trades(leg("CL", [(100.0, 100.0, 100.0, 100.0), MID, MID])) == []


def test_flat_after_intrabar_exit_may_signal_again_on_that_bar():
    rows = [SIGNAL, (100.0, 100.2, 99.9, 100.1), (99.8, 99.9, 98.0, 98.1), (98.2, 98.6, 98.0, 98.5), MID]
    first, second = trades(leg("CL", rows))
    assert first["exit_reason"] == "stop_loss" and first["exit_time"] == "2026-11-02T02:00:00Z"
    assert second["entry_time"] == "2026-11-02T03:00:00Z" and second["entry_price"] == 98.2


def test_coordinator_picks_lowest_ibs_then_root_name():
    low = (100.0, 101.0, 99.0, 99.05)  # IBS 0.025
    tie = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1
    result = run([leg("GC", [tie, MID, MID]), leg("CL", [tie, MID, MID]), leg("HG", [low, MID, MID])],
                 max_positions=2)
    assert sorted(t["symbol"] for t in result.trades) == ["CL", "HG"]
    assert result.skipped == [{"symbol": "GC", "bar_time": "2026-11-02T00:00:00Z",
                               "reason": "max positions reached (2 open or filling)"}]


def test_open_positions_hold_their_slots():
    result = run([leg("CL", [SIGNAL, MID, MID, MID]), leg("GC", [MID, SIGNAL, MID, MID])], max_positions=1)
    assert [t["symbol"] for t in result.trades] == ["CL"]
    assert result.skipped[0]["symbol"] == "GC"


def test_ml_filter_skips_low_scores():
    kept = run([leg("CL", [SIGNAL, MID, MID], ml=[0.7, 0.1, 0.1])]).trades
    assert len(kept) == 1 and kept[0]["ml_score"] == 0.7
    dropped = run([leg("CL", [SIGNAL, MID, MID], ml=[0.3, 0.1, 0.1])])
    assert dropped.trades == [] and "below threshold 0.5" in dropped.skipped[0]["reason"]
    assert len(run([leg("CL", [SIGNAL, MID, MID], ml=[0.3, 0.1, 0.1])], use_ml=False).trades) == 1


def test_a_time_zone_folder_is_a_parameter_error_not_a_crash():
    from strategies.params import IBSParams, ParameterError

    with pytest.raises(ParameterError, match="window_tz: unknown time zone 'America'"):
        IBSParams(window_tz="America")  # a folder of the tz database: IsADirectoryError underneath


def test_product_hours_refuse_an_entry_in_the_last_bar_before_an_early_close_and_force_the_exit_before_it():
    """ES on Thanksgiving Friday 2026 closes at 12:00 Chicago (18:00 UTC): a flat book's entry signal at
    the 16:00 UTC bar would be decided at 17:00 and its first exit decision would come at the close, so it
    is refused; a position already open is exited at the 17:00 decision, before the close."""
    from datetime import datetime, timezone

    day = datetime(2026, 11, 27, 14, tzinfo=timezone.utc)
    sig, mid = (100.0, 100.5, 99.5, 99.55), MID
    params = {"entry_windows": "00:00-24:00", "flat_time": "none", "max_bars_held": 20}
    refused = run([leg("ES", [mid, mid, sig, mid, mid], start=day, point_value=50.0, **params)])
    assert refused.trades == [] and "closes early" in refused.skipped[0]["reason"]
    held = run([leg("ES", [sig, mid, mid, mid, mid], start=day, point_value=50.0, **params)])
    (trade,) = held.trades
    assert (trade["exit_reason"], trade["exit_signal_time"][:16]) == ("early_close", "2026-11-27T16:00")
    assert trade["exit_time"][:16] == "2026-11-27T17:00"  # filled at the 17:00 open, before the 18:00 close
    assert run([leg("ES", [sig, mid, mid, mid, mid], start=day, point_value=50.0, **params)],
               product_hours=False).trades[0]["exit_reason"] == "end_of_data"  # without the calendar: held on
