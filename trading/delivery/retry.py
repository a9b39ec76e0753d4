"""Backoff between attempts, and a server's "try again in N seconds" read as a bounded number.

A Retry-After (or Discord's `retry_after`) is the other side's word, not a command: it is clamped to
[0, MAX_RETRY_AFTER] and an unreadable one falls back to the backoff — never an overflow, never a
wait that outlives what it waits for.
"""
from __future__ import annotations

import email.utils
import math
import random
import time

MAX_RETRY_AFTER = 86_400.0  # s: a longer wait is taken as a day (callers also cap it at the item's own expiry)


def backoff_seconds(attempt: int, retry_after: float | None = None, *, base: float = 2.0, cap: float = 60.0,
                    rng=random.random) -> float:
    """Delay before attempt `attempt + 1`: exponential with 20 % jitter, capped; never below retry_after."""
    delay = min(cap, base * 2 ** (attempt - 1))
    delay *= 1 + 0.2 * rng()
    return max(delay, retry_after or 0.0)


def seconds(value) -> tuple[float | None, str]:
    """A number of seconds from a server (a header's text or a JSON number), clamped; with a note when odd."""
    if value is None:
        return None, ""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return None, f"{text[:60]!r} is not a number of seconds; backoff used"
    if not math.isfinite(number):
        return None, f"{text[:60]!r} is not a number of seconds; backoff used"
    if number < 0:
        return 0.0, f"{text[:60]!r} is in the past; retried now"
    if number > MAX_RETRY_AFTER:
        return MAX_RETRY_AFTER, f"{text[:60]!r} capped at {MAX_RETRY_AFTER:g} s (and at the item's expiry)"
    return number, ""


def retry_after(value: str | None, *, now: float | None = None) -> tuple[float | None, str]:
    """A Retry-After header (delta-seconds or an HTTP date) as clamped seconds, and a note when odd;
    (None, note) when it is absent or unreadable."""
    if value is None:
        return None, ""
    text = value.strip()
    try:
        float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
            delta = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, OverflowError, AttributeError):
            return None, f"Retry-After {text[:60]!r} is neither seconds nor an HTTP date; backoff used"
        number, note = seconds(delta)
        return number, note and f"Retry-After {text[:60]!r}: {note.split(' ', 1)[1]}"
    number, note = seconds(text)
    return number, note and f"Retry-After {note}"
