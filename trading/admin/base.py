"""Shared admin pieces: read-only model admins, finite decimals in forms, and CSV export."""
import csv

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.http import StreamingHttpResponse

from trading.models import DeliveryAttempt


class FiniteDecimalField(forms.DecimalField):
    """Refuses NaN, sNaN and infinities as it reads them: Django compares the value with the initial one
    (has_changed) before validating, and comparing a signalling NaN raises instead of failing the field."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and not value.is_finite():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return value


FINITE_DECIMALS = {models.DecimalField: {"form_class": FiniteDecimalField}}


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the processes; the operator looks, never edits here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _Echo:
    def write(self, value):
        return value


def csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    """Stream rows as CSV (constant memory, so 100k trades export fine)."""
    writer = csv.writer(_Echo())

    def generate():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(generate(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class DeliveryAttemptInline(admin.TabularInline):
    """The delivery log of an order or an alert (set `fk_name`): every POST with its outcome, read-only."""
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    max_num = 0
    fields = ("number", "attempted_at", "outcome", "status_code", "duration_ms", "response")
    readonly_fields = fields
