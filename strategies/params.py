"""Parameters of the IBS strategy: names, defaults, parsing and validation.

One definition shared by the backtest CLI, the live worker and the admin's model validation,
so a value refused in one place is refused everywhere, with the parameter's name in the error.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ParameterError(ValueError):
    """A parameter value is unknown or out of range; `.param` names it."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(f"{param}: {message}")


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def _minutes(h: str, m: str, *, allow_24: bool) -> int | None:
    hh, mm = int(h), int(m)
    if mm > 59 or hh > 24 or (hh == 24 and (mm != 0 or not allow_24)):
        return None
    return hh * 60 + mm


def parse_windows(text: str) -> tuple[tuple[int, int], ...]:
    """'00:00-15:00,17:00-24:00' → ((0, 900), (1020, 1440)) in minutes of the day, end exclusive."""
    if not text or not text.strip():
        raise ParameterError("entry_windows", "empty; give windows like '00:00-15:00,17:00-24:00'")
    out = []
    for part in text.split(","):
        m = _WINDOW.match(part)
        start = end = None
        if m:
            start = _minutes(m[1], m[2], allow_24=False)
            end = _minutes(m[3], m[4], allow_24=True)
        if start is None or end is None:
            raise ParameterError("entry_windows", f"cannot parse {part.strip()!r}; expected HH:MM-HH:MM")
        if end <= start:
            raise ParameterError("entry_windows", f"window {part.strip()!r} ends before it starts")
        out.append((start, end))
    return tuple(out)


def parse_clock(name: str, text: str) -> int | None:
    """'15:00' → 900 minutes; 'none' → None (disabled)."""
    if text.strip().lower() == "none":
        return None
    m = _CLOCK.match(text)
    minutes = _minutes(m[1], m[2], allow_24=False) if m else None
    if minutes is None:
        raise ParameterError(name, f"cannot parse {text!r}; expected HH:MM or 'none'")
    return minutes


@dataclass(frozen=True)
class IBSParams:
    ibs_entry_low: float = 0.0
    ibs_entry_high: float = 0.2
    ibs_exit_low: float = 0.8
    ibs_exit_high: float = 1.0
    stop_loss_pct: float = 1.0
    take_profit_pct: float = 1.0
    max_bars_held: int = 8
    entry_windows: str = "00:00-15:00,17:00-24:00"
    flat_time: str = "15:00"
    window_tz: str = "UTC"
    ml_threshold: float = 0.5

    def __post_init__(self):
        errors = param_errors(self)
        if errors:
            name, message = next(iter(errors.items()))
            raise ParameterError(name, message)
        # The parsed forms, once: the step reads them at every bar. Plain attributes, not fields, so equality,
        # hashing, repr and asdict still see the text only; replace() builds (and parses) a new instance.
        object.__setattr__(self, "_windows", parse_windows(self.entry_windows))
        object.__setattr__(self, "_flat_minute", parse_clock("flat_time", self.flat_time))
        object.__setattr__(self, "_tz", ZoneInfo(self.window_tz))

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        return self._windows

    @property
    def flat_minute(self) -> int | None:
        return self._flat_minute

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def with_overrides(self, overrides: dict) -> "IBSParams":
        """A copy with `overrides` applied (values may be strings); unknown names are refused."""
        if not overrides:
            return self
        values = dataclasses.asdict(self)
        for name, raw in overrides.items():
            values[name] = parse_value(name, raw)
        return IBSParams(**values)


def param_errors(p) -> dict[str, str]:
    """Every rule broken by the values of `p` (an IBSParams or any object with those attributes),
    as {parameter: message}; empty when all are valid. Lets a form name every bad field at once."""
    errors: dict[str, str] = {}
    for name in ("ibs_entry_low", "ibs_entry_high", "ibs_exit_low", "ibs_exit_high", "ml_threshold"):
        v = getattr(p, name)
        if not (0.0 <= v <= 1.0):
            errors[name] = f"{v} is outside [0, 1]"
    for low, high in (("ibs_entry_low", "ibs_entry_high"), ("ibs_exit_low", "ibs_exit_high")):
        if low not in errors and high not in errors and not getattr(p, low) < getattr(p, high):
            errors[high] = f"must be above {low} ({getattr(p, low)})"
    if not (0.0 < p.stop_loss_pct < 100.0):
        errors["stop_loss_pct"] = f"{p.stop_loss_pct} must be > 0 and < 100"
    if not (0.0 < p.take_profit_pct <= 1000.0):
        errors["take_profit_pct"] = f"{p.take_profit_pct} must be > 0 and ≤ 1000"
    if p.max_bars_held < 1:
        errors["max_bars_held"] = f"{p.max_bars_held} must be at least 1"
    for name, check in (("entry_windows", lambda: parse_windows(p.entry_windows)),
                        ("flat_time", lambda: parse_clock("flat_time", p.flat_time))):
        try:
            check()
        except ParameterError as exc:
            errors[name] = str(exc).removeprefix(f"{name}: ")
    try:
        ZoneInfo(p.window_tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        errors["window_tz"] = f"unknown time zone {p.window_tz!r}"
    return errors


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(IBSParams))
PARAM_TYPES = {f.name: f.type for f in dataclasses.fields(IBSParams)}
DEFAULTS = IBSParams()


def parse_value(name: str, raw):
    """Convert `raw` (string or number) to the type of parameter `name`."""
    if name not in PARAM_TYPES:
        raise ParameterError(name, f"unknown parameter; known: {', '.join(PARAM_NAMES)}")
    kind = PARAM_TYPES[name]
    try:
        if kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        return str(raw)
    except (TypeError, ValueError):
        raise ParameterError(name, f"{raw!r} is not a valid {kind}") from None
