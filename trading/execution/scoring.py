"""The model registry of a worker: each instrument's ML filter, loaded, scored, and what happens when it fails.

A model that fails to load or to score is the same event: the instrument goes on by its ML failure
policy (skip entries, or trade without the filter), alerted once; nothing else stops. Feature rows come
from numpy arrays kept in step with the worker's bar frames (strategies.features.LiveFeatures: the values
of feature_row without a DataFrame per candidate), bar by bar from the bars the worker appended (a frame
is read only when one was set anew).
"""
from __future__ import annotations

import logging
import math
from datetime import date, datetime, timezone

import pandas as pd
from django.conf import settings

from strategies.features import LiveFeatures, feature_names
from strategies.forest import read_array_forest
from strategies.ml import ModelError, load
from trading.delivery.alerts import enqueue
from trading.execution.hours import BarFrames
from trading.modelcard import alert_warnings

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, strategy, legs: dict):
        self.strategy, self.legs = strategy, legs
        self.models: dict[str, object] = {}
        self.errors: dict[str, str] = {}
        self.rows: dict[str, tuple] = {}  # root → (bar time, feature names, their values) of the last score
        self.live = LiveFeatures()
        self.seen: dict[str, tuple[int, int]] = {}  # root → the mark of its bars in `followed` the history holds
        self.followed = None  # the BarFrames those marks are of
        self.checked: dict[str, date] = {}  # root → wall-clock day its model's warnings were last checked
        roots = list(legs)
        for root, leg in legs.items():
            if not leg.row.ml_enabled:
                continue
            try:
                # The forest served from its file's arrays: the same scores, no sklearn in the worker (issue 19).
                self.models[root] = load(root, settings.MODELS_DIR, feature_names(roots, root),
                                         reader=read_array_forest)
            except ModelError as exc:
                self.failed(root, str(exc))
            else:
                self.check(root)

    def check(self, root: str) -> None:
        """A loaded model that does not help out of sample, looks ahead or is too old: alerted once per
        model file (trading.modelcard); checked at load and then once a day, by the wall clock."""
        model, today = self.models.get(root), datetime.now(timezone.utc).date()
        if model is None or self.checked.get(root) == today:
            return
        self.checked[root] = today
        try:
            alert_warnings(self.strategy, root, model.meta)
        except Exception:  # noqa: BLE001 — a warning that cannot be queued never stops trading
            log.exception("model warning check failed strategy=%s root=%s", self.strategy.name, root)

    def skips_entries(self, root: str) -> bool:
        """Whether `root`'s filter is unavailable and its policy says: no entries meanwhile."""
        leg = self.legs[root]
        return leg.row.ml_enabled and root in self.errors and leg.row.ml_failure_policy == "skip_entries"

    def score(self, root: str, bar, frames: dict[str, pd.DataFrame]) -> float | None:
        """P(profitable) of an entry at `bar`; None: trade without the filter; NaN: no score."""
        if not self.legs[root].row.ml_enabled:
            return None
        model = self.models.get(root)
        if model is None:
            return math.nan if self.skips_entries(root) else None
        self.check(root)
        try:
            self.follow(frames)
            names, values = self.live.row(root, int(bar.ts.timestamp()) * 1_000_000_000)
            self.rows[root] = (bar.ts, names, values)
            return model.probability_of(names, values)
        except Exception as exc:  # noqa: BLE001 — a model that fails to score is a model that failed to load
            self.failed(root, f"scoring failed at {bar.ts:%Y-%m-%d %H:%M} UTC: {exc.__class__.__name__}: {exc}")
            return self.score(root, bar, frames)

    def follow(self, frames) -> None:
        """The feature histories brought up to `frames`. From the worker's BarFrames, the bars appended since
        the last score are appended (no DataFrame made); a root's frame is read only when its bars are not
        all known: not followed yet (a new registry, a root added), its frame set anew (history loaded again),
        or more bars appended since than the frames keep. Any other mapping of frames: LiveFeatures.update."""
        if frames is not self.followed:  # marks are one BarFrames' own
            self.seen, self.followed = {}, frames if isinstance(frames, BarFrames) else None
        if self.followed is None:
            self.live.update(frames)
            return
        for root in frames:
            seen, mark = self.seen.pop(root, None), frames.mark(root)
            new = frames.since(root, seen) if seen is not None and root in self.live.histories else None
            if new is None:
                self.live.follow(root, frames[root])
            else:
                for ts_ns, high, low, close in new:
                    self.live.append(root, ts_ns, high, low, close, keep=frames.keep)
            self.seen[root] = mark  # (not reached when refused: followed from its frame next time)
        self.live.keep_roots(list(frames))

    def features(self, root: str, bar_time) -> dict | None:
        """The feature row `root` was scored from at `bar_time` (None: not scored at that bar)."""
        at, names, values = self.rows.get(root, (None, None, None))
        if at != bar_time:
            return None
        return {name: (None if math.isnan(v) else round(float(v), 6)) for name, v in zip(names, values.tolist())}

    def failed(self, root: str, error: str) -> None:
        self.models.pop(root, None)
        self.errors[root] = error
        policy = self.legs[root].row.get_ml_failure_policy_display()
        name = self.strategy.name
        log.error("model failed strategy=%s root=%s policy=%s error=%s", name, root, policy, error)
        enqueue("emergency", f"{name}: ML model for {root} unavailable", strategy=self.strategy,
                body=f"{error}\nPolicy: {policy}.", dedupe_key=f"model:{name}:{root}:{hash(error[:80])}")
