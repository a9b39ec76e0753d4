"""Backtests from the admin: the add form queues one (Celery task trading.run_backtest) and its page shows the
progress, refreshing itself while it runs, then the report. A run is never edited: a new one is asked for."""
import logging
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import escape, format_html

from trading.models import BacktestRun, Instrument, Strategy
from trading.models.backtests import describe_held, held_sessions

from . import backtest_report

log = logging.getLogger(__name__)
REFRESH_SECONDS = 2


class BacktestRunForm(forms.ModelForm):
    instrument = forms.ModelChoiceField(
        queryset=Instrument.objects.filter(strategy_legs__isnull=False).distinct(), required=False,
        help_text="One instrument of the strategy (listed under each strategy); blank: every enabled instrument "
                  "of the strategy together, with its max positions")

    class Meta:
        model = BacktestRun
        fields = ("strategy", "instrument", "start_date", "end_date", "use_ml")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "start_date" not in self.fields:
            return  # a run's page: everything is shown read-only
        groups, roots = [], set()
        for strategy in Strategy.objects.prefetch_related("legs__instrument").order_by("name"):
            legs = sorted(strategy.legs.all(), key=lambda leg: leg.instrument.root)
            roots |= {leg.instrument.root for leg in legs}
            if legs:
                groups.append((str(strategy), [(leg.instrument_id, f"{leg.instrument.root} ({strategy.name})"
                                                + ("" if leg.enabled else ", disabled")) for leg in legs]))
        self.fields["instrument"].choices = [("", "— the whole strategy —"), *groups]
        if roots:
            # Django's admin renders help texts as HTML: everything from the database is escaped here.
            self.fields["start_date"].help_text = escape(
                f"{BacktestRun._meta.get_field('start_date').help_text}. Hourly bars in the bar store (first → last "
                f"session): {describe_held(held_sessions(sorted(roots)))}")


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    form = BacktestRunForm
    change_form_template = "admin/trading/backtestrun/change_form.html"
    list_display = ("__str__", "state", "progress_shown", "trade_count", "total_pnl", "requested_by", "created_at")
    list_filter = ("state", "strategy")
    list_select_related = ("strategy", "instrument", "requested_by")
    date_hierarchy = "created_at"
    view_fields = ("strategy", "instrument_shown", "sessions", "use_ml", "requested_by", "created_at", "run_time",
                   "state", "progress_shown", "outcome")

    # A run is a record of what was asked and what came out: started here, looked at, deleted; never changed.
    def has_change_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return super().get_fields(request, obj) if obj is None else self.view_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.view_fields

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        spans = [s for s in held_sessions(sorted(set(Instrument.objects.filter(strategy_legs__isnull=False)
                                                     .values_list("root", flat=True)))).values() if s]
        if spans and "end_date" not in initial:
            end = max(s[1] for s in spans)
            initial.setdefault("start_date", max(min(s[0] for s in spans), end - timedelta(days=28)))
            initial["end_date"] = end
        return initial

    def save_model(self, request, obj, form, change):
        obj.requested_by = request.user
        super().save_model(request, obj, form, change)
        transaction.on_commit(lambda pk=obj.pk: queue(pk))
        log.info("backtest asked run=%s strategy=%s instrument=%s sessions=%s..%s user=%s", obj.pk, obj.strategy.name,
                 obj.instrument.root if obj.instrument_id else "all", obj.start_date, obj.end_date, request.user)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"Backtest {obj.pk} queued: this page follows it until its report is ready.",
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:trading_backtestrun_change", args=[obj.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(show_save_and_add_another=False, show_save_and_continue=False,
                       backtest_refresh=REFRESH_SECONDS if obj is not None and not obj.finished else None,
                       backtest_report=backtest_report.report(obj) if obj is not None else "")
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="instrument")
    def instrument_shown(self, obj):
        return obj.instrument.root if obj.instrument_id else "the whole strategy (its enabled instruments)"

    @admin.display(description="sessions")
    def sessions(self, obj):
        return f"{obj.start_date} → {obj.end_date} (CME trade dates)"

    @admin.display(description="run time")
    def run_time(self, obj):
        return backtest_report.duration(obj)

    @admin.display(description="progress")
    def progress_shown(self, obj):
        return backtest_report.progress(obj)

    @admin.display(description="outcome")
    def outcome(self, obj):
        if obj.state == BacktestRun.State.FAILED:
            return format_html('<p class="errornote backtest-error">{}</p>', obj.error)
        if obj.state == BacktestRun.State.DONE:
            return f"{obj.metrics.get('trades')} trades over {obj.bars} hourly bars, total P&L $ " \
                   f"{backtest_report.money(obj.metrics.get('total_pnl'))}"
        return "waiting for the Celery worker" if obj.state == BacktestRun.State.QUEUED else "running"

    @admin.display(description="trades")
    def trade_count(self, obj):
        return obj.metrics.get("trades", "—") if obj.state == BacktestRun.State.DONE else "—"

    @admin.display(description="total P&L $")
    def total_pnl(self, obj):
        return backtest_report.money(obj.metrics.get("total_pnl")) if obj.state == BacktestRun.State.DONE else "—"


def queue(run_id: int) -> None:
    """Hand the run to Celery; a broker that cannot take it fails the run with what to do, never leaves it
    waiting for a task that will not come."""
    from trading.tasks import run_backtest

    try:
        run_backtest.delay(run_id)
    except Exception as exc:  # noqa: BLE001 — kombu's errors vary by transport; the row says what happened
        log.error("backtest not queued run=%s error=%s", run_id, exc)
        BacktestRun.objects.filter(pk=run_id, state=BacktestRun.State.QUEUED).update(
            state=BacktestRun.State.FAILED, error=f"could not hand the backtest to Celery ({exc.__class__.__name__}: "
                                                  f"{exc}); check Redis and the celery-worker program, then start it again")
