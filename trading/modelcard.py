"""What the operator is told about an instrument's ML model: age, data source, figures and warnings.

Reads `{ROOT}.json` only (never the model file, never a network), so it can be shown anywhere; a
missing or unreadable file is a card that says so, never an exception. A model trained on generated
data says so in every place it is shown (`generated`), and its warnings are alerted once per model file.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCard:
    root: str
    meta: dict | None
    problem: str = ""  # why there is no metadata to show

    @property
    def generated(self) -> bool:
        """Trained on generated bars (the demo's market, strategies.synthetic), not on Databento's."""
        if not self.meta:
            return False
        kind = (self.meta.get("data_source") or {}).get("kind")
        return kind == "generated" or (kind is None and "generated" in str(self.meta.get("note", "")).lower())

    @property
    def source(self) -> str:
        """'generated data (…)' or 'Databento GLBX.MDP3, 2025-01-02 → 2026-01-05', from the metadata."""
        if not self.meta:
            return "—"
        src = self.meta.get("data_source") or {}
        span = f"{str(src.get('start', '?'))[:10]} → {str(src.get('end', '?'))[:10]}" if src.get("start") else ""
        if self.generated:
            detail = src.get("detail") or src.get("generator") or "strategies.synthetic"
            return f"GENERATED DATA ({detail}{', seed ' + str(src['seed']) if 'seed' in src else ''}){', ' + span if span else ''}"
        if src.get("kind") == "databento":
            return f"Databento {src.get('dataset', '?')}{', ' + span if span else ''}"
        return f"unknown (retrain with manage.py train_models){', ' + span if span else ''}"

    @property
    def trained_at(self) -> datetime | None:
        raw = (self.meta or {}).get("trained_at")
        try:
            return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if raw else None
        except (TypeError, ValueError):
            return None

    def age_days(self, now: datetime) -> float | None:
        return None if self.trained_at is None else (now - self.trained_at).total_seconds() / 86400

    @property
    def comparison(self) -> dict | None:
        cmp = (self.meta or {}).get("comparison")
        return cmp if isinstance(cmp, dict) and "with_filter" in cmp else None

    @property
    def folds(self) -> list[dict]:
        return list(((self.meta or {}).get("walk_forward") or {}).get("folds") or [])

    def warnings(self, now: datetime, max_age_days: float | None = None) -> list[tuple[str, str]]:
        """(key, text) of each thing wrong with the model, worst first; keys name the kind for alerts."""
        if not self.meta:
            return [("missing", f"no model metadata: {self.problem}")]
        max_age = settings.MODEL_MAX_AGE_DAYS if max_age_days is None else max_age_days
        out = []
        cmp = self.comparison
        if cmp is None:
            out.append(("no-oos", "no out-of-sample figures: trained before walk-forward evaluation; retrain "
                                  "with manage.py train_models"))
        elif not cmp.get("helps"):
            w, wo = cmp["with_filter"], cmp["without_filter"]
            out.append(("no-help", f"the filter does not help out of sample: with it {w['trades']} trades, P&L "
                                   f"{_money(w['total_pnl'])}, max drawdown {_money(w['max_drawdown'])}; without it "
                                   f"{wo['trades']} trades, P&L {_money(wo['total_pnl'])}, max drawdown "
                                   f"{_money(wo['max_drawdown'])} ({cmp.get('folds')} walk-forward folds)"))
        leaks = ((self.meta.get("walk_forward") or {}).get("look_ahead")) or []
        if leaks:
            out.append(("look-ahead", f"features that look ahead (differ from the live form): {', '.join(leaks)}"))
        age = self.age_days(now)
        if age is None:
            out.append(("age-unknown", "training time unknown (no trained_at in the metadata)"))
        elif age > max_age:
            out.append(("old", f"trained {age:.0f} days ago ({self.trained_at:%Y-%m-%d}), more than "
                               f"PINEOPS_MODEL_MAX_AGE_DAYS={max_age:g}"))
        return out


def _money(value) -> str:
    return "—" if value is None else f"${value:,.2f}"


def model_card(root: str, models_dir: Path | None = None) -> ModelCard:
    path = Path(models_dir or settings.MODELS_DIR) / f"{root}.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return ModelCard(root, None, f"{path.name} not in {path.parent}")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return ModelCard(root, None, f"{path.name} unreadable ({exc.__class__.__name__})")
    if not isinstance(meta, dict):
        return ModelCard(root, None, f"{path.name} is not a JSON object")
    return ModelCard(root, meta)


ALERTED = ("no-help", "look-ahead", "old")


def alert_warnings(strategy, root: str, meta: dict, now: datetime | None = None) -> list[str]:
    """Queue one alert per warning of a loaded model (deduplicated per strategy, root, model file and
    kind, so restarts and hourly checks alert once); returns the kinds queued now."""
    from trading.delivery.alerts import enqueue

    card = ModelCard(root, meta)
    now = now or datetime.now(timezone.utc)
    queued = []
    for key, text in card.warnings(now):
        if key not in ALERTED:
            continue
        mark = " (generated data)" if card.generated else ""
        row = enqueue("info", f"{strategy.name}: ML model for {root}{mark}: {text.split(':')[0]}",
                      strategy=strategy, body=f"{text}\nModel page: Admin → Trading → Instruments → {root} → Model.",
                      dedupe_key=f"model-{key}:{strategy.name}:{root}:{str(meta.get('sha256', ''))[:16]}")
        if row is not None:
            log.warning("model warning strategy=%s root=%s kind=%s %s", strategy.name, root, key, text)
            queued.append(key)
    return queued
