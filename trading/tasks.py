"""Celery tasks: thin, idempotent wrappers around service functions (safe to run twice)."""
from celery import shared_task
from django.conf import settings

from trading.execution import recovery, sender
from trading.health import monitor
from trading.marketdata.clock import market_now
from trading.notify import delivery
from trading.risk import daily


@shared_task(name="trading.check_heartbeats", ignore_result=True)
def check_heartbeats():
    return monitor.check_heartbeats()


@shared_task(name="trading.send_pending_orders", ignore_result=True)
def send_pending_orders():
    """Safety net for strategies whose order sender is not running (worker down): delivers their
    due orders. Strategies with a live sender are left to it; claims make a double send impossible."""
    return sender.send_orphaned_orders()


@shared_task(name="trading.check_stuck_orders", ignore_result=True)
def check_stuck_orders():
    recovered = recovery.recover_interrupted()
    stuck = recovery.alert_stuck_pending()
    return {"recovered": recovered, "stuck": stuck}


@shared_task(name="trading.deliver_notifications", ignore_result=True, soft_time_limit=60)
def deliver_notifications():
    """Discord delivery; beat runs it every few seconds, a run holds a webhook's order (see delivery)."""
    return delivery.deliver_notifications().counts()


@shared_task(name="trading.open_session", ignore_result=True)
def open_session():
    """At 17:00 America/Chicago: the new CME session (of the market's clock) starts with a clean daily stop."""
    return daily.session_boundary(market_now())


@shared_task(name="trading.daily_summary", ignore_result=True)
def daily_summary():
    return daily.daily_summary(market_now())


@shared_task(name="trading.follow_market_clock", ignore_result=True)
def follow_market_clock():
    """Every few seconds: with a replay's clock (PINEOPS_MARKET_CLOCK=data), open its sessions and queue their
    summaries as its time passes them; with the wall clock the crontab tasks above do, and this does nothing."""
    if settings.MARKET_CLOCK != "data":
        return None
    return daily.follow_market(market_now())


@shared_task(name="trading.drift_reports", ignore_result=True)
def drift_reports():
    """At 16:05 America/Chicago: each strategy's session that closed, backtested and compared (trading.drift)."""
    from trading.drift.report import report_closed_sessions

    return report_closed_sessions()


@shared_task(name="trading.run_backtest", ignore_result=True)
def run_backtest(run_id: int):
    """A backtest asked for in the admin (trading.backtests); a second delivery of it changes nothing."""
    from trading.backtests import run_backtest as run

    return run(run_id)
