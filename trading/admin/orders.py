import numpy as np
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from strategies.indicators import ibs
from trading.execution.paper import fill_of
from trading.modelcard import model_card
from trading.models import PaperOrder, Position, Signal, StoredBar, StrategyInstrument, Trade

from .base import DeliveryAttemptInline, ReadOnlyAdmin


class OrderAttemptInline(DeliveryAttemptInline):
    fk_name = "signal"


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ("key", "contract", "state", "action", "quantity", "signal_price", "reason", "why", "attempts",
                    "last_status", "sent_at")
    list_filter = (("strategy__mode", admin.ChoicesFieldListFilter), "state", "action", "strategy", "reason")
    search_fields = ("key", "contract")
    date_hierarchy = "bar_time"
    list_select_related = ("strategy", "instrument")
    inlines = [OrderAttemptInline]
    show_full_result_count = False
    # A signal's whole story on its page: the bar it was decided on, the filter, the risk decision, the
    # delivery log (inline) and what it opened or closed in the books.
    readonly_fields = ("decision_bar", "ml_filter", "ml_features", "risk_decision", "books")
    fieldsets = (
        ("Decision", {"fields": ("key", "strategy", "instrument", "contract", "bar_time", "decision_bar", "action",
                                 "quantity", "signal_price", "reason", "ibs", "ml_filter", "ml_features")}),
        ("Risk", {"fields": ("risk_decision", "state", "state_reason")}),
        ("Books", {"fields": ("books", "fill", "market_price", "market_time")}),
        ("Delivery", {"fields": ("payload", "attempts", "last_status", "last_error", "next_attempt_at", "expires_at",
                                 "claimed_at", "claimed_by", "created_at", "sent_at")}),
    )

    @admin.display(description="refused / held by")
    def why(self, obj):
        """The control that refused or held it and why (blank: none did)."""
        if not (obj.risk_control or obj.state_reason):
            return ""
        text = obj.state_reason if len(obj.state_reason) <= 60 else obj.state_reason[:59] + "…"
        return f"{obj.get_risk_control_display()}: {text}" if obj.risk_control else text

    @admin.display(description="decided on bar")
    def decision_bar(self, obj):
        bar = StoredBar.objects.filter(root=obj.instrument.root, timeframe="1h", ts=obj.bar_time).first()
        if bar is None:
            return "not in the bar store (the hour was decided from the streams only)"
        value = float(ibs(np.array([bar.high]), np.array([bar.low]), np.array([bar.close]))[0])
        return format_html('<span class="decision-bar" data-open="{}" data-high="{}" data-low="{}" data-close="{}" '
                           'data-ibs="{}">{} {} UTC · O {} · H {} · L {} · C {} · IBS {}</span>',
                           bar.open, bar.high, bar.low, bar.close, f"{value:.4f}", bar.contract or bar.root,
                           f"{bar.ts:%Y-%m-%d %H:%M}", bar.open, bar.high, bar.low, bar.close, f"{value:.4f}")

    @admin.display(description="ML filter")
    def ml_filter(self, obj):
        if obj.ml_score is None:
            return "no score (ML off for this leg, or an exit)"
        threshold, when = obj.ml_threshold, "when decided"
        if threshold is None:  # decided before thresholds were recorded: today's setting, said so
            leg = StrategyInstrument.objects.filter(strategy=obj.strategy_id, instrument=obj.instrument_id).first()
            threshold, when = (leg.params().ml_threshold if leg else None), "today's setting"
        if threshold is None:
            return f"score {obj.ml_score:.4f}"
        verdict = "passed" if obj.ml_score >= threshold else "refused"
        sign = "≥" if obj.ml_score >= threshold else "<"
        model = model_card(obj.instrument.root)
        mark = format_html(' · <a class="generated-mark" href="{}">model trained on GENERATED DATA</a>',
                           reverse("admin:trading_instrument_model", args=[obj.instrument_id])) if model.generated else ""
        return format_html('<span class="ml-filter" data-score="{}" data-threshold="{}">score {} {} threshold {} '
                           '({}): {}</span>{}', obj.ml_score, threshold, f"{obj.ml_score:.4f}", sign, f"{threshold:.2f}",
                           when, verdict, mark)

    @admin.display(description="features")
    def ml_features(self, obj):
        if not obj.features:
            return "none recorded (ML off for this leg, not scored at this bar, or an exit)"
        rows = ((name, "—" if value is None else f"{value:.6g}") for name, value in sorted(obj.features.items()))
        return format_html('<table class="ml-features">{}</table>',
                           format_html_join("", '<tr><th>{}</th><td>{}</td></tr>', rows))

    @admin.display(description="risk decision")
    def risk_decision(self, obj):
        if obj.risk_control:
            return f"{obj.get_risk_control_display()}: {obj.state_reason or obj.get_state_display()}"
        return "no control refused or held it"

    @admin.display(description="opened / closed")
    def books(self, obj):
        if obj.action == Signal.Action.BUY:
            verb, positions, trades = "opened", Position.objects.filter(entry_signal=obj), \
                Trade.objects.filter(entry_signal=obj)
        else:
            verb, positions, trades = "closed", Position.objects.filter(exit_signal=obj), \
                Trade.objects.filter(exit_signal=obj)
        rows = [(verb, _link(pos)) for pos in positions]
        rows += [("trade", _link(trade, f"trade {trade.symbol} {trade.pnl:+.2f} $")) for trade in trades]
        if not rows:
            return "nothing in the books (not filled, or refused)"
        return format_html_join(mark_safe("<br>"), "{}: {}", rows)


def _link(obj, label=None):
    url = reverse(f"admin:trading_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    """What the built-in paper broker took from paper strategies, with each order's fill in the books."""
    list_display = ("received_at", "strategy", "key", "action", "ticker", "fill")
    list_filter = ("signal__strategy", "signal__action")
    search_fields = ("signal__key",)
    list_select_related = ("signal__strategy",)

    @admin.display(description="strategy")
    def strategy(self, obj):
        return obj.signal.strategy

    @admin.display(description="order")
    def key(self, obj):
        return obj.signal.key

    @admin.display(description="action")
    def action(self, obj):
        return obj.signal.action

    @admin.display(description="ticker")
    def ticker(self, obj):
        return obj.payload.get("ticker", "")

    @admin.display(description="fill in the books")
    def fill(self, obj):
        fill = fill_of(obj)
        return f"{fill[1]} at {fill[0]:%Y-%m-%d %H:%M} UTC" if fill else "— (not filled yet)"
