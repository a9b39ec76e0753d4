"""The drift report against a real worker's records: the worker trades a session in-process (real Redis
and database, the TradersPost stand-in over HTTP), the bar store holds what the hub published, and
`manage.py drift` compares the backtest of those bars with what the worker decided."""
from datetime import date, datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from strategies.bars import Bar
from trading.execution.worker import Worker
from trading.marketdata import streams
from trading.marketdata.barstore import store_bar, store_bars
from trading.models import DriftItem, DriftReport, Notification, Signal, StoredBar, Strategy
from trading.risk.killswitch import set_mode
from tests.desk import EXIT, MID, SIGNAL, HeldBack, demo_desk
from tests.strategies.builders import hourly

pytestmark = pytest.mark.django_db(transaction=True)
UTC = timezone.utc
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # Monday 19:00 Chicago: session 2026-11-03, in the entry window
DAY = date(2026, 11, 3)
SESSION = [SIGNAL, EXIT, MID, SIGNAL, MID, EXIT, SIGNAL, EXIT, MID, SIGNAL, EXIT, MID]


@pytest.fixture
def desk(settings, redis_prefix, webhook_env, monkeypatch, broker, tmp_path):
    demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("CL",))
    store_bars("CL", "1h", hourly([MID] * 48, start=T0 - timedelta(days=3)), "test")
    w = Worker("ibs_a", block_ms=10)
    w.setup()
    return w


def trade(w, rows, *, hook=None, skip_hub=()):
    """Each hour published by the hub (its stream and the bar store), the worker deciding it at once;
    `hook(i)` runs before hour i; hours in `skip_hub` never reach the hub (the bar store gets them later)."""
    for i, (o, h, l, c) in enumerate(rows):
        if hook:
            hook(i)
        bar = Bar("CL", "CLZ6", "1h", T0 + timedelta(hours=i), o, h, l, c, 100, 10)
        if i not in skip_hub:
            streams.publish(bar)
            store_bar(bar)
        streams.set_watermark(int((bar.ts + timedelta(hours=1)).timestamp()) * 10**9)
        w.poll()


def drift() -> tuple[DriftReport, str]:
    out = StringIO()
    call_command("drift", "--strategy", "ibs_a", "--session", DAY.isoformat(), stdout=out)
    return DriftReport.objects.get(strategy__name="ibs_a", session_date=DAY), out.getvalue()


def differences(report):
    return list(report.items.exclude(kind="matched").filter(follows=None).order_by("bar_time"))


def test_an_uninterrupted_session_has_no_difference(desk):
    trade(desk, SESSION)
    report, out = drift()
    assert report.differences == 0 and report.unexplained == 0, out
    trades = Strategy.objects.get(name="ibs_a").trades.filter(session_date=DAY)
    assert trades.count() >= 3
    assert report.matched == report.items.count() >= 2 * trades.count()
    assert report.live_pnl == sum(t.pnl for t in trades) == report.backtest_pnl  # to the cent
    live = [p[1] for p in report.equity["live"]]
    assert live == [p[1] for p in report.equity["backtest"]] and live[-1] == float(report.live_pnl)
    buy = report.items.filter(action="buy").first()
    assert buy.signal.key == f"ibs_a:CL:{buy.bar_time:%Y-%m-%dT%H:%M:%SZ}:buy"
    assert buy.live_price == buy.backtest_price and buy.live_time == buy.backtest_time
    assert not Notification.objects.filter(dedupe_key__startswith="drift:").exists()


def test_an_hour_of_block_entries_is_exactly_the_blocked_entries_with_reason_killswitch(desk):
    def killswitch(i):
        if i == 3:
            set_mode("entries", "standing aside an hour", actor="t")
        if i == 4:
            set_mode("off", "back", actor="t")

    trade(desk, SESSION, hook=killswitch)
    blocked = list(Signal.objects.filter(risk_control="killswitch").values_list("bar_time", flat=True))
    assert blocked == [T0 + timedelta(hours=3)]
    report, out = drift()
    top = differences(report)
    assert [(d.kind, d.action, d.bar_time, d.reason) for d in top] == [
        ("missing_live", "buy", T0 + timedelta(hours=3), "killswitch")], out
    assert "entries mode blocks entries" in top[0].detail and top[0].signal.state == "blocked"
    # what the blocked entry would have done follows from it, not a difference of its own
    assert all(c.reason == "killswitch" for c in top[0].consequences.all())
    assert report.items.filter(kind="matched").count() > 0 and report.unexplained == 0
    assert "killswitch" in out and "missing_live" in out


def test_an_entry_still_in_the_outbox_when_block_entries_goes_on_is_named_with_reason_killswitch(desk):
    """Decided, not sent yet when the killswitch goes to "block entries" (before the next hour is decided):
    it is cancelled, never sent, and the report names it, reason killswitch, nothing unexplained."""
    sender = desk.sender

    def killswitch(i):
        if i == 0:
            desk.sender = HeldBack()
        if i == 1:
            set_mode("entries", "standing aside", actor="t")
            desk.sender = sender
        if i == 2:
            set_mode("off", "back", actor="t")

    trade(desk, SESSION, hook=killswitch)
    entry = Signal.objects.get(bar_time=T0, action="buy")
    assert (entry.state, entry.risk_control, entry.attempts) == ("blocked", "killswitch", 0)
    assert "decided before the change, never sent" in entry.state_reason
    report, out = drift()
    top = differences(report)
    assert [(d.kind, d.action, d.bar_time, d.reason) for d in top] == [("missing_live", "buy", T0, "killswitch")], out
    assert top[0].signal == entry and report.unexplained == 0
    assert report.items.filter(kind="matched").count() > 0


def test_an_entry_refused_after_the_worker_held_it_for_hours_is_named_and_its_exit_follows_from_it(desk):
    """The sender far behind (a slow broker): the worker models the entry's fill and holds the position for
    hours (no entry at the next signal bar: it holds CL) before block entries cancels it, unsent. The report
    names the entry, reason killswitch; the exit the backtest made of it follows from it; nothing else
    differs and nothing is unexplained."""
    sender = desk.sender

    def late(i):
        if i == 0:
            desk.sender = HeldBack()
        if i == 4:
            set_mode("entries", "standing aside", actor="t")  # before the exit bar is decided
            desk.sender = sender
        if i == 5:
            set_mode("off", "back", actor="t")

    low = (100.0, 100.5, 99.5, 99.55)  # IBS 0.05: an entry while flat; above the held position's stop
    trade(desk, [SIGNAL, MID, low, MID, EXIT, MID, SIGNAL, EXIT, MID, MID], hook=late)
    entry = Signal.objects.get(bar_time=T0, action="buy")
    assert (entry.state, entry.risk_control) == ("blocked", "killswitch")
    assert not Signal.objects.filter(bar_time=T0 + timedelta(hours=2), action="buy").exists()  # it held CL then
    report, out = drift()
    top = differences(report)
    assert report.unexplained == 0, out
    assert [(d.kind, d.action, d.bar_time, d.reason) for d in top] == [("missing_live", "buy", T0, "killswitch")], out
    assert [(c.action, c.bar_time, c.reason) for c in top[0].consequences.all()] == [
        ("exit", T0 + timedelta(hours=4), "killswitch")], out


def test_an_hour_the_hub_never_published_is_named_as_a_hub_gap(desk):
    rows = list(SESSION)
    trade(desk, rows, skip_hub={6})
    missing = T0 + timedelta(hours=6)
    o, h, l, c = rows[6]
    store_bars("CL", "1h", hourly([rows[6]], start=missing), "files", contract="CLZ6")  # completed afterwards
    assert StoredBar.objects.get(root="CL", timeframe="1h", ts=missing).source == "files"
    report, out = drift()
    top = differences(report)
    assert top and all(d.reason == "hub_gap" for d in top), out
    # the exit decided the hour before filled at that hour's open in the backtest, later live
    assert top[0].bar_time <= missing and all("CL: no hub bar at 2026-11-03 07:00 UTC" in d.detail for d in top)
    assert any("hub gap: CL had no bar from the hub at 2026-11-03 07:00 UTC" in n for n in report.notes)
    assert report.unexplained == 0


def test_an_unexplained_difference_is_reported_and_alerted_once(desk):
    trade(desk, SESSION)
    # the bar store's bar differs from what the hub published, and no record says why
    StoredBar.objects.filter(root="CL", timeframe="1h", ts=T0 + timedelta(hours=4)).update(close=99.2, low=99.0)
    report, out = drift()
    assert report.unexplained >= 1 and "unexplained" in out
    alerts = Notification.objects.filter(dedupe_key=f"drift:ibs_a:{DAY}")
    assert alerts.count() == 1 and "unexplained difference" in alerts.get().title
    drift()
    assert alerts.count() == 1


def test_a_session_that_is_not_a_trading_day_or_a_strategy_that_does_not_exist_is_refused(desk):
    with pytest.raises(CommandError, match="2026-11-07 is not a CME trading day"):
        call_command("drift", "--strategy", "ibs_a", "--session", "2026-11-07")
    with pytest.raises(CommandError, match="no strategy 'nope'"):
        call_command("drift", "--strategy", "nope", "--session", DAY.isoformat())
    with pytest.raises(CommandError, match="is not a date"):
        call_command("drift", "--strategy", "ibs_a", "--session", "3/11/2026")


def test_the_beat_task_reports_the_last_session_the_data_closed_once(desk):
    from trading.tasks import drift_reports

    trade(desk, SESSION)
    # the worker's clock is inside the session of DAY: the last one closed is the day before (nothing traded)
    assert drift_reports() == {"ibs_a": "2026-11-02: 0 differences, 0 unexplained"}
    trade_rest = [MID] * 14
    for i, (o, h, l, c) in enumerate(trade_rest, start=len(SESSION)):
        bar = Bar("CL", "CLZ6", "1h", T0 + timedelta(hours=i), o, h, l, c, 100, 10)
        streams.publish(bar)
        store_bar(bar)
        streams.set_watermark(int((bar.ts + timedelta(hours=1)).timestamp()) * 10**9)
        desk.poll()
    done = drift_reports()
    assert set(done) == {"ibs_a"} and done["ibs_a"].startswith(f"{DAY}: 0 differences")
    assert drift_reports() == {}
    assert DriftItem.objects.filter(report__session_date=DAY).count() > 0
