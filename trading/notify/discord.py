"""Discord webhook messages that always fit Discord's limits, coalesced summaries, and one POST.

Every message names its strategy (embed author) and is passed through `fit()`, so Discord never
refuses it (400) for size. `post()` makes exactly one attempt and says when to try again; the
outbox owns retries. The webhook URL is a secret: never logged, never in a result, repr or error.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests

from trading.delivery.outcomes import Outcome
from trading.delivery.retry import retry_after as header_seconds
from trading.delivery.retry import seconds
from trading.delivery.webhooks import fingerprint
log = logging.getLogger(__name__)

COLOURS = {"startup": 0x2ECC71, "shutdown": 0x95A5A6, "entry": 0x3498DB, "exit": 0x9B59B6,
           "emergency": 0xE74C3C, "summary": 0xF1C40F, "info": 0x5865F2}
LIMITS = {"content": 2000, "embeds": 10, "title": 256, "description": 4096, "fields": 25, "field_name": 256,
          "field_value": 1024, "footer": 2048, "author": 256, "total": 6000}
ELLIPSIS = "…"
NO_STRATEGY = "PineOps"
BODY_LIMIT = 2000


# --- sizes -------------------------------------------------------------------------------------------
def text_length(text: str) -> int:
    """Length as Discord's JavaScript counts it (UTF-16 units): ≥ len(), so a fit here fits there."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units, ending with an ellipsis when cut."""
    text = "" if text is None else str(text)
    if text_length(text) <= limit:
        return text
    if limit <= 0:
        return ""
    # errors="ignore" drops half a surrogate pair left at the cut.
    return text.encode("utf-16-le")[: 2 * (limit - 1)].decode("utf-16-le", errors="ignore") + ELLIPSIS


def embed_text_length(message: dict) -> int:
    """Characters Discord counts toward the 6,000 per message: titles, descriptions, fields, footers, authors."""
    total = 0
    for embed in message.get("embeds") or []:
        total += text_length(embed.get("title") or "") + text_length(embed.get("description") or "")
        total += text_length((embed.get("footer") or {}).get("text") or "")
        total += text_length((embed.get("author") or {}).get("name") or "")
        for f in embed.get("fields") or []:
            total += text_length(f.get("name") or "") + text_length(f.get("value") or "")
    return total


def fit(message: dict) -> dict:
    """A copy of `message` inside every Discord limit; cut text ends with an ellipsis.

    Under the 6,000 total, the budget goes first to authors (strategy names) and titles, then
    footers, then fields, then descriptions; whatever no longer fits is dropped.
    """
    out: dict = {k: v for k, v in message.items() if k not in ("content", "embeds")}
    embeds = [dict(e) for e in (message.get("embeds") or [])]
    note = ""
    if len(embeds) > LIMITS["embeds"]:
        note = f"\n({len(embeds) - LIMITS['embeds']} more embeds omitted)"
        embeds = embeds[: LIMITS["embeds"]]
    content = message.get("content") or ""
    if content or note:
        out["content"] = truncate(truncate(content, LIMITS["content"] - len(note)) + note, LIMITS["content"])
        if not out["content"]:
            del out["content"]

    for e in embeds:
        if "author" in e:
            e["author"] = {**e["author"], "name": truncate(e["author"].get("name"), LIMITS["author"]) or NO_STRATEGY}
        if "title" in e:
            e["title"] = truncate(e["title"], LIMITS["title"])
        if "description" in e:
            e["description"] = truncate(e["description"], LIMITS["description"])
        if "footer" in e:
            e["footer"] = {**e["footer"], "text": truncate(e["footer"].get("text"), LIMITS["footer"])}
        fields = list(e.get("fields") or [])
        if len(fields) > LIMITS["fields"]:
            extra = len(fields) - LIMITS["fields"] + 1
            fields = fields[: LIMITS["fields"] - 1] + [{"name": ELLIPSIS, "value": f"{extra} more fields omitted"}]
        if "fields" in e:
            e["fields"] = [{**f, "name": truncate(f.get("name"), LIMITS["field_name"]) or "—",
                            "value": truncate(f.get("value"), LIMITS["field_value"]) or "—"} for f in fields]

    budget = LIMITS["total"]

    def spend(text: str) -> str:
        nonlocal budget
        cut = truncate(text, budget)
        budget -= text_length(cut)
        return cut

    for e in embeds:  # authors and titles of every embed first
        if "author" in e:
            e["author"]["name"] = spend(e["author"]["name"])
        if "title" in e:
            e["title"] = spend(e["title"])
    for e in embeds:
        if "footer" in e:
            e["footer"]["text"] = spend(e["footer"]["text"])
    for e in embeds:
        kept = []
        for f in e.get("fields") or []:
            if budget < 2:
                break
            name = spend(f["name"])
            if budget < 1:  # a field needs a value: give back the name and stop
                budget += text_length(name)
                break
            kept.append({**f, "name": name, "value": spend(f["value"])})
        if "fields" in e:
            e["fields"] = kept
    for e in embeds:
        if "description" in e:
            e["description"] = spend(e["description"])
    for e in embeds:  # Discord refuses empty parts
        for key in ("title", "description"):
            if key in e and not e[key]:
                del e[key]
        if "author" in e and not e["author"]["name"]:
            del e["author"]
        if "footer" in e and not e["footer"]["text"]:
            del e["footer"]
        if "fields" in e and not e["fields"]:
            del e["fields"]
    if embeds:
        out["embeds"] = embeds
    return out


# --- messages ----------------------------------------------------------------------------------------
def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(timezone.utc).isoformat()


def _fields(fields) -> list[dict]:
    pairs = fields.items() if isinstance(fields, dict) else (fields or [])
    out = []
    for item in pairs:
        if isinstance(item, dict):
            name, value, inline = item.get("name"), item.get("value"), item.get("inline", True)
        else:
            (name, value), inline = item, True
        if value is None or value == "":
            continue
        out.append({"name": str(name), "value": str(value), "inline": bool(inline)})
    return out


def build_message(kind: str, title: str, *, strategy: str | None, description: str = "", fields=None,
                  footer: str = "PineOps", when: datetime | None = None, content: str = "") -> dict:
    """One embed coloured by `kind`, the strategy as its author; always within Discord's limits."""
    if kind not in COLOURS:
        raise ValueError(f"unknown notification kind {kind!r}: one of {', '.join(COLOURS)}")
    embed = {"author": {"name": f"{strategy or NO_STRATEGY}"}, "title": f"{title}", "color": COLOURS[kind],
             "footer": {"text": f"{footer} · {kind}"}}
    if description:
        embed["description"] = str(description)
    if fields:
        embed["fields"] = _fields(fields)
    if when is not None:
        embed["timestamp"] = _iso(when)
    message = {"embeds": [embed], "allowed_mentions": {"parse": []}}
    if content:
        message["content"] = str(content)
    return fit(message)


def _money(x) -> str:
    return f"{'-' if float(x) < 0 else ''}${abs(float(x)):,.2f}"


def format_duration(d: timedelta | float) -> str:
    seconds = int(d.total_seconds() if isinstance(d, timedelta) else d)
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"]
    return ("-" if seconds < 0 else "") + " ".join(parts)


def lifecycle_message(kind: str, *, strategy: str | None, process: str, detail: str = "",
                      when: datetime | None = None) -> dict:
    """Startup or shutdown of a worker or the hub."""
    if kind not in ("startup", "shutdown"):
        raise ValueError("lifecycle kind is 'startup' or 'shutdown'")
    verb = "started" if kind == "startup" else "stopped"
    return build_message(kind, f"{process} {verb}", strategy=strategy, description=detail, when=when)


def entry_message(*, strategy: str, symbol: str, side: str, price: float, size: int, reason: str = "",
                  when: datetime | None = None, extra_fields=None) -> dict:
    fields = [("Symbol", symbol), ("Side", side), ("Price", f"{price:g}"), ("Size", size)]
    fields += list(_fields(extra_fields or []))
    return build_message("entry", f"Entry {side} {size} {symbol} @ {price:g}", strategy=strategy,
                         description=reason, fields=fields, when=when)


def exit_message(*, strategy: str, symbol: str, side: str, pnl: float, pnl_percent: float, exit_price: float,
                 duration: timedelta | float, reason: str, size: int | None = None,
                 entry_price: float | None = None, when: datetime | None = None) -> dict:
    fields = [("Symbol", symbol), ("Side", side), ("P&L $", _money(pnl)), ("P&L %", f"{pnl_percent:+.2f}%"),
              ("Exit price", f"{exit_price:g}"), ("Entry price", None if entry_price is None else f"{entry_price:g}"),
              ("Size", size), ("Duration", format_duration(duration)), ("Reason", reason)]
    return build_message("exit", f"Exit {symbol} {_money(pnl)} ({pnl_percent:+.2f}%)", strategy=strategy,
                         fields=fields, when=when)


def emergency_message(*, strategy: str | None, title: str, detail: str = "", fields=None,
                      when: datetime | None = None) -> dict:
    return build_message("emergency", f"🚨 {title}", strategy=strategy, description=detail, fields=fields, when=when)


@dataclass(frozen=True)
class Alert:
    """A queued notification as plain values (what the outbox row holds)."""
    kind: str
    title: str
    strategy: str | None = None
    body: str = ""
    fields: dict = field(default_factory=dict)
    when: datetime | None = None


def notification_message(alert: Alert) -> dict:
    return build_message(alert.kind, alert.title, strategy=alert.strategy, description=alert.body,
                         fields=alert.fields, when=alert.when)


def coalesce(alerts, *, window: str = "", when: datetime | None = None) -> dict:
    """Many alerts (say 50 in a minute) as one summary message within limits: counts, then one line each."""
    alerts = list(alerts)
    if not alerts:
        raise ValueError("nothing to coalesce")
    strategies = sorted({a.strategy or NO_STRATEGY for a in alerts})
    by_kind = Counter(a.kind for a in alerts)
    worst = "emergency" if by_kind.get("emergency") else "summary"
    lines, used = [], 0
    for i, a in enumerate(alerts):
        stamp = a.when.astimezone(timezone.utc).strftime("%H:%M:%S ") if a.when else ""
        line = truncate(f"• {stamp}[{a.kind}] {a.strategy or NO_STRATEGY}: {a.title}", 200)
        if used + text_length(line) + 1 > LIMITS["description"] - 40:
            lines.append(f"… and {len(alerts) - i} more")
            break
        lines.append(line)
        used += text_length(line) + 1
    title = f"{len(alerts)} alerts" + (f" in {window}" if window else "")
    fields = [(kind, str(n)) for kind, n in by_kind.most_common()]
    fields.append(("Strategies", ", ".join(strategies)))
    message = build_message("summary", title, strategy=", ".join(strategies), description="\n".join(lines),
                            fields=fields, when=when)
    message["embeds"][0]["color"] = COLOURS[worst]
    return message


# --- delivery ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostResult:
    """One POST's outcome (delivered | retryable | permanent). Holds the URL's fingerprint (`hook`), never the URL.

    `retry_after`: seconds before retrying this message (429 or a 5xx with Retry-After).
    `pause_for`: seconds the sender should hold every post to this webhook (a 429, or a bucket
    that X-RateLimit-Remaining: 0 says is empty until X-RateLimit-Reset-After).
    """
    outcome: str
    status_code: int | None = None
    body: str = ""
    retry_after: float | None = None
    pause_for: float = 0.0
    is_global: bool = False
    error: str = ""
    hook: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.DELIVERED


def _seconds(value) -> float | None:
    return seconds(value)[0]


def post(url: str, message: dict, timeout: float = 10.0, session: requests.Session | None = None) -> PostResult:
    """POST `message` once (re-fitted to Discord's limits). 2xx ok; 429/5xx/timeout retryable; other 4xx permanent."""
    hook = fingerprint(url)
    try:
        response = (session or requests).post(url, json=fit(message), timeout=timeout)
    except requests.Timeout:
        log.warning("discord post hook=%s outcome=retryable error=timeout", hook)
        return PostResult(Outcome.RETRYABLE, error=f"timeout after {timeout:g}s", hook=hook)
    except requests.RequestException as exc:
        log.warning("discord post hook=%s outcome=retryable error=%s", hook, exc.__class__.__name__)
        return PostResult(Outcome.RETRYABLE, error=f"connection error ({exc.__class__.__name__})", hook=hook)

    status, headers = response.status_code, response.headers
    body = response.text[:BODY_LIMIT]
    remaining = headers.get("X-RateLimit-Remaining")
    reset_after = _seconds(headers.get("X-RateLimit-Reset-After"))
    pause = reset_after if remaining is not None and remaining.strip() == "0" and reset_after else 0.0
    retry_after, is_global = None, headers.get("X-RateLimit-Global", "").lower() == "true"
    if status == 429:
        try:
            data = json.loads(response.text)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        retry_after = _seconds(data.get("retry_after"))
        if retry_after is None:
            retry_after = header_seconds(headers.get("Retry-After"))[0]
        if retry_after is None:
            retry_after = reset_after if reset_after is not None else 1.0
        is_global = is_global or bool(data.get("global"))
        outcome = Outcome.RETRYABLE
    elif 200 <= status < 300:
        outcome = Outcome.DELIVERED
    elif status >= 500:
        outcome, retry_after = Outcome.RETRYABLE, header_seconds(headers.get("Retry-After"))[0]
    else:
        outcome = Outcome.PERMANENT
    pause = max(pause, retry_after or 0.0) if status == 429 else pause
    log.info("discord post hook=%s status=%d outcome=%s pause=%.3f", hook, status, outcome, pause)
    return PostResult(outcome, status, body, retry_after, pause, is_global, hook=hook)


def wait_hint(result: PostResult) -> float:
    """Seconds before the next post to the same webhook (0 when none is needed)."""
    return max(result.pause_for, result.retry_after or 0.0) if result.outcome != Outcome.PERMANENT else 0.0

