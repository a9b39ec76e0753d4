"""`manage.py drift --strategy NAME --session YYYY-MM-DD`: the drift report of one session, made now.

The backtest of the session's bars beside what the worker decided and delivered (trading.drift.report),
stored for the admin's drift page and printed here; an unexplained difference is alerted.
"""
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from strategies.calendar import is_trade_date
from trading.drift.report import make_report
from trading.models import DriftItem, Strategy


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--session {text!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = "Compare one CME session of a strategy with the backtest of its bars; store and print the report."

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True, help="the strategy's name")
        parser.add_argument("--session", required=True, help="the CME trading day (YYYY-MM-DD)")
        parser.add_argument("--no-alert", action="store_true", help="do not alert unexplained differences")

    def handle(self, *args, strategy, session, no_alert=False, **options):
        day = _day(session)
        if not is_trade_date(day):
            raise CommandError(f"{day} is not a CME trading day")
        row = Strategy.objects.filter(name=strategy).first()
        if row is None:
            names = ", ".join(Strategy.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"no strategy {strategy!r} (strategies: {names})")
        report = make_report(row, day, alert=not no_alert)
        self.stdout.write(f"{row.name} {day}: {report.bars} bars, {report.matched} matched, "
                          f"{report.differences} differences, {report.unexplained} unexplained; "
                          f"P&L live {report.live_pnl} $, backtest {report.backtest_pnl} $")
        for note in report.notes:
            self.stdout.write(f"  note: {note}")
        for item in report.items.exclude(kind=DriftItem.Kind.MATCHED).select_related("follows"):
            under = "    " if item.follows_id else "  "
            self.stdout.write(f"{under}{item.root} {item.action} {item.bar_time:%Y-%m-%d %H:%M} UTC "
                              f"{item.kind}: {item.get_reason_display()} — {item.detail}")
