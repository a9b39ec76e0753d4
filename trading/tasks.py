"""Celery tasks: thin, idempotent wrappers around service functions (safe to run twice)."""
from celery import shared_task

from trading.execution import outbox
from trading.health import monitor


@shared_task(name="trading.check_heartbeats", ignore_result=True)
def check_heartbeats():
    return monitor.check_heartbeats()


@shared_task(name="trading.send_pending_orders", ignore_result=True)
def send_pending_orders():
    """Safety net beside each worker's own sender: claims make a double send impossible."""
    report = outbox.send_pending_orders()
    return {k: len(v) for k, v in vars(report).items()}


@shared_task(name="trading.check_stuck_orders", ignore_result=True)
def check_stuck_orders():
    recovered = outbox.recover_interrupted()
    stuck = outbox.alert_stuck_pending()
    return {"recovered": recovered, "stuck": stuck}
