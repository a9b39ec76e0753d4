"""Optimistic locking for the configuration the admin edits (strategies, instruments, legs).

Each form carries the version of the row it was opened on. Saving checks it against the row, locked
for the rest of the save: a newer version means someone saved since, and the form is refused with
who changed what since — nothing the other admin saved reverts silently. Every save that changes
something raises the version and is recorded as a ConfigRevision.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from trading.models import ConfigRevision


def _labels(form, names) -> list[str]:
    return [str(form.fields[n].label or n) for n in names if n in form.fields and n != SEEN]


SEEN = "seen_version"  # the form field: the row's version when the form was opened


class VersionedForm(forms.ModelForm):
    seen_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields[SEEN].initial = self.instance.version if self.instance.pk else 1
        self._current = None

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk or not self.has_changed():
            return cleaned
        given = cleaned.get(SEEN)
        model = type(self.instance)
        current = model.objects.select_for_update().filter(pk=self.instance.pk).values_list(
            "version", flat=True).first()  # locked until this save commits: two saves never interleave
        if given is None:
            raise ValidationError("This form carries no version: reload the page and make your change again.")
        if current is not None and given != current:
            raise ValidationError(stale_message(self.instance, given, current))
        self._current = current
        return cleaned

    def save(self, commit=True):
        obj = super().save(commit=False)
        if obj.pk and self._current is not None and self.has_changed():
            obj.version = self._current + 1
        if commit:
            obj.save()
            self.save_m2m()
        return obj


def stale_message(obj, given: int, current: int) -> str:
    name = obj._meta.verbose_name
    since = ConfigRevision.objects.filter(model=obj._meta.model_name, object_id=obj.pk, version__gt=given).order_by(
        "version")
    who = "; ".join(f"{r.user} at {r.at:%Y-%m-%d %H:%M:%S} UTC ({', '.join(r.fields) or 'no field'})" for r in since)
    return (f"Not saved: this {name} was changed since you opened it (version {given} → {current})"
            f"{': by ' + who if who else ''}. Reload the page to see the current values and make your change again; "
            f"nothing you typed was applied.")


def record(request, obj, form) -> None:
    if form.has_changed() and obj.pk:
        ConfigRevision.objects.create(model=obj._meta.model_name, object_id=obj.pk, version=obj.version,
                                      object_repr=str(obj)[:200], user=request.user.get_username(),
                                      fields=_labels(form, form.changed_data))


class VersionedAdmin(admin.ModelAdmin):
    """Saves through VersionedForm and records each change (inlines too, when they use VersionedForm)."""
    form = VersionedForm

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        name, options = fieldsets[0]
        if SEEN not in options["fields"]:
            fieldsets[0] = (name, {**options, "fields": (*options["fields"], SEEN)})
        return fieldsets

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        record(request, obj, form)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for f in formset.forms:
            if isinstance(f, VersionedForm) and f.instance.pk and not getattr(f, "cleaned_data", {}).get("DELETE"):
                record(request, f.instance, f)
