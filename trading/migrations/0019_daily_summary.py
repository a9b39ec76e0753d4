"""The daily risk state becomes the daily summary of the books: winners, gross win and gross loss beside the
P&L and the trade count, filled for every session already traded from its trades (the books)."""
from django.db import migrations, models
from django.db.models import Count, Q, Sum


def from_trades(apps, schema_editor):
    Trade = apps.get_model("trading", "Trade")
    DailyRiskState = apps.get_model("trading", "DailyRiskState")
    rows = (Trade.objects.values("strategy_id", "session_date").order_by()
            .annotate(total=Sum("pnl"), n=Count("id"), wins=Count("id", filter=Q(pnl__gt=0)),
                      won=Sum("pnl", filter=Q(pnl__gt=0)), lost=Sum("pnl", filter=Q(pnl__lt=0))))
    for r in rows.iterator():
        DailyRiskState.objects.update_or_create(
            strategy_id=r["strategy_id"], session_date=r["session_date"],
            defaults=dict(realized_pnl=r["total"], trades=r["n"], wins=r["wins"], won=r["won"] or 0, lost=r["lost"] or 0))


class Migration(migrations.Migration):
    dependencies = [("trading", "0018_backtest_runs")]
    operations = [
        migrations.AddField("dailyriskstate", "wins", models.PositiveIntegerField(default=0, help_text="Trades with P&L > 0")),
        migrations.AddField("dailyriskstate", "won", models.DecimalField(decimal_places=2, default=0, help_text="Gross win $",
                                                                         max_digits=14)),
        migrations.AddField("dailyriskstate", "lost", models.DecimalField(decimal_places=2, default=0,
                                                                          help_text="Gross loss $ (≤ 0)", max_digits=14)),
        migrations.RunPython(from_trades, migrations.RunPython.noop),
    ]
