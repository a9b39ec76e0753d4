"""The admin's change forms as a browser posts them back: for tests that submit forms without loading them."""
from html.parser import HTMLParser

from django.forms.models import model_to_dict

from trading.models import Strategy


def strategy_form_data(strategy: Strategy, **changes) -> dict:
    """The change form of `strategy` as the admin would post it back unchanged (legs inline included)."""
    data = {k: ("" if v is None else v) for k, v in model_to_dict(strategy).items() if k not in ("id",)}
    data["enabled"] = "on" if strategy.enabled else ""
    data["seen_version"] = strategy.version
    legs = list(strategy.legs.order_by("pk"))
    data.update({"legs-TOTAL_FORMS": len(legs), "legs-INITIAL_FORMS": len(legs), "legs-MIN_NUM_FORMS": 0,
                 "legs-MAX_NUM_FORMS": 1000})
    for i, leg in enumerate(legs):
        data.update({f"legs-{i}-id": leg.pk, f"legs-{i}-strategy": strategy.pk, f"legs-{i}-instrument": leg.instrument_id,
                     f"legs-{i}-enabled": "on" if leg.enabled else "", f"legs-{i}-size": leg.size,
                     f"legs-{i}-commission_per_side": leg.commission_per_side, f"legs-{i}-ticker": leg.ticker,
                     f"legs-{i}-ml_enabled": "on" if leg.ml_enabled else "",
                     f"legs-{i}-ml_threshold": "" if leg.ml_threshold is None else leg.ml_threshold,
                     f"legs-{i}-ml_failure_policy": leg.ml_failure_policy,
                     f"legs-{i}-roll_policy": leg.roll_policy, f"legs-{i}-overrides": "{}",
                     f"legs-{i}-seen_version": leg.version})
    data.update(changes)
    return data


class FormFields(HTMLParser):
    """The successful controls of <form id=form_id>: what a browser posts when nothing is edited."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside = form_id, False
        self.data: dict[str, list[str]] = {}
        self._select = self._textarea = None
        self._options: list[tuple[str, bool]] = []
        self._option_value = None
        self._text = ""

    def add(self, name, value):
        if name and "__prefix__" not in name:  # the inline's hidden template row
            self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside:
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.add(a.get("name"), a.get("value") or "on")
                return
            self.add(a.get("name"), a.get("value") or "")
        elif tag == "select":
            self._select, self._options = a, []
        elif tag == "option" and self._select is not None:
            self._option_value, self._text = a.get("value"), ""
            self._options.append((a.get("value"), "selected" in a))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_data(self, data):
        if self._textarea is not None or self._option_value is not None or self._select is not None:
            self._text += data

    def handle_endtag(self, tag):
        if not self.inside:
            return
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            self.add(self._textarea, self._text[1:] if self._text.startswith("\n") else self._text)
            self._textarea = None
        elif tag == "select" and self._select is not None:
            chosen = [v for v, sel in self._options if sel] or [v for v, _ in self._options[:1]]
            if "multiple" in self._select:
                chosen = [v for v, sel in self._options if sel]
            for value in chosen:
                self.add(self._select.get("name"), value or "")
            self._select = None


def form_data(client, url: str, form_id: str) -> dict:
    page = client.get(url)
    assert page.status_code == 200, url
    parser = FormFields(form_id)
    parser.feed(page.content.decode())
    assert parser.data, f"no form {form_id} on {url}"
    return {k: v[0] if len(v) == 1 else v for k, v in parser.data.items()}


class Errors(HTMLParser):
    """Field errors of an admin page: {field name: [messages]} ('__all__' for non-field ones)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.errors: dict[str, list[str]] = {}
        self._field = None
        self.errornote = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "ul" and "errorlist" in classes:
            ident = a.get("id") or ""
            self._field = ident[3:-6] if ident.startswith("id_") and ident.endswith("_error") else "__all__"
            self.errors.setdefault(self._field, [])
        elif tag == "li" and self._field is not None:
            self.errors[self._field].append("")
        elif tag == "p" and "errornote" in classes:
            self.errornote = True

    def handle_data(self, data):
        if self._field is not None and self.errors[self._field]:
            self.errors[self._field][-1] += data

    def handle_endtag(self, tag):
        if tag == "ul":
            self._field = None


def page_errors(response) -> tuple[dict[str, list[str]], bool]:
    parser = Errors()
    parser.feed(response.content.decode())
    return parser.errors, parser.errornote
