"""The worker's scorer over its BarFrames: each root's feature history follows the bars appended since the
last score, bar by bar, with no DataFrame on a candidate's path, and its rows and scores are the pandas path's
(feature_row over the frames as BarFrames makes them) through the kept front dropped, frames set anew, a root
added, a new registry, a gap longer than what is kept and a bar refused."""
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from strategies.bars import Bar, frame_from_bars
from strategies.features import LOOKBACK, LiveFeatures, feature_row
from strategies.ibs import entry_candidate
from strategies.params import IBSParams
from strategies.synthetic import strategy_bars
from tests.strategies.test_live_features import IBS_A, MODELS, assert_same_row
from trading.execution import hours, scoring
from trading.execution.hours import BarFrames

UTC = timezone.utc


@pytest.fixture
def registry(settings, monkeypatch):
    """A ModelRegistry of ibs_a's six roots and the demo models; its alerts recorded, not queued."""
    settings.MODELS_DIR = MODELS
    alerts = []
    monkeypatch.setattr(scoring, "alert_warnings", lambda *a: None)  # the model card's alerts need the database
    monkeypatch.setattr(scoring, "enqueue", lambda *a, **kw: alerts.append((a, kw)))

    def make():
        legs = {r: SimpleNamespace(row=SimpleNamespace(ml_enabled=True, ml_failure_policy="skip_entries",
                                                       get_ml_failure_policy_display=lambda: "Skip entries"))
                for r in IBS_A}
        made = scoring.ModelRegistry(SimpleNamespace(name="ibs_a"), legs)
        assert sorted(made.models) == IBS_A and not made.errors
        return made

    make.alerts = alerts
    return make


def bars_of(frame: pd.DataFrame, root: str) -> list[Bar]:
    return [Bar(root, f"{root}Z6", "1h", datetime.fromtimestamp(ts // 10**9, UTC), o, h, l, c, int(v), 1)
            for ts, o, h, l, c, v in frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False)]


class Desk:
    """The worker's side of the scorer: its BarFrames, set and appended to as Worker.setup, reload and
    process_hour do, and beside them the frames the pandas path reads (set alike, bars concatenated, the last
    `keep` kept)."""

    def __init__(self, bars: dict[str, list[Bar]], keep: int = LOOKBACK * 2):
        self.bars, self.frames, self.ref = bars, BarFrames(keep), {}

    @classmethod
    def followed(cls, full: dict, keep: int = LOOKBACK * 2) -> "Desk":
        """A desk of `full`'s bars (root → frame), ibs_a's roots' frames set to their first LOOKBACK bars."""
        desk = cls({r: bars_of(f, r) for r, f in full.items()}, keep=keep)
        for root in IBS_A:
            desk.set(root, 0, LOOKBACK)
        return desk

    def set(self, root: str, lo: int, hi: int) -> None:
        """`root`'s frame set anew to its bars [lo, hi) (history loaded: Worker.setup; a root added: empty)."""
        self.frames[root] = self.ref[root] = frame_from_bars(self.bars[root][lo:hi])

    def append(self, i: int) -> dict[str, Bar]:
        """Hour `i`: every root's bar appended (Worker.append_frame), as process_hour does before its step."""
        new = {root: self.bars[root][i] for root in self.frames}
        for root, bar in new.items():
            self.frames.append(bar)
            self.ref[root] = pd.concat([self.ref[root], frame_from_bars([bar])],
                                       ignore_index=True).tail(self.frames.keep)
        return new

    def check(self, registry, root: str, bar: Bar, models: dict | None = None) -> float:
        """`root` scored at `bar`: the score and the row it came from are the pandas path's and a fresh
        build's (LiveFeatures from the pandas frames)."""
        ts = int(bar.ts.timestamp()) * 10**9
        got = registry.score(root, bar, self.frames)
        ref_row = feature_row(self.ref, root, ts)
        want = float((models or registry.models)[root].probability(ref_row.to_frame().T)[0])
        assert got == want or (np.isnan(got) and np.isnan(want)), (root, bar.ts, got, want)
        at, names, values = registry.rows[root]
        assert at == bar.ts
        assert_same_row(names, values, ref_row)
        fresh = LiveFeatures()
        fresh.update(self.ref)
        fresh_names, fresh_values = fresh.row(root, ts)
        assert names == fresh_names and np.array_equal(values, fresh_values, equal_nan=True)
        return got


def candidates(bars: dict[str, Bar]) -> list[str]:
    params = IBSParams()
    return [root for root, bar in bars.items() if entry_candidate(bar, params, 3600) is not None]


def test_scores_follow_the_appended_bars_through_the_dropped_front_a_rebuild_a_root_added_and_a_reload(registry):
    """ibs_a's six roots hour by hour, frames kept to LOOKBACK + 24 bars (the front dropped from the 25th
    hour on), the pandas path's score and row at every entry candidate; at hour 60 every frame set anew
    (Worker.setup again), at 110 ES added (its empty frame, then its bars: the models read their own features
    by name), at 160 a new registry (a config reload)."""
    full = strategy_bars(IBS_A + ["ES"], LOOKBACK + 220, seed=23, start="2026-02-02")
    desk = Desk.followed(full, keep=LOOKBACK + 24)
    reg, scored, above = registry(), 0, 0
    for step in range(220):
        i = LOOKBACK + step
        if step == 60:
            for root in IBS_A:
                desk.set(root, i - LOOKBACK, i)
        if step == 110:
            desk.set("ES", i, i)
        if step == 160:
            reg = registry()
        new = desk.append(i)
        for root in candidates({r: b for r, b in new.items() if r in IBS_A}):
            score = desk.check(reg, root, new[root])
            scored, above = scored + 1, above + (score >= reg.models[root].threshold)
    assert scored > 150 and above and not reg.errors and not registry.alerts
    assert len(reg.live.histories["CL"]) == LOOKBACK + 24 and "ES" in reg.live.roots


def test_the_production_keep_past_its_front_and_a_gap_longer_than_kept(registry):
    """BarFrames' own keep (2 × LOOKBACK) over 600 hours, its front dropped from hour 240 on: every candidate's
    row is a fresh build's, every 4th candidate's score the pandas path's too. Then more hours pass unscored
    than the frames keep, and the next score follows the frames again."""
    full = strategy_bars(IBS_A, LOOKBACK + 600 + 2 * LOOKBACK + 1, seed=29, start="2026-03-02")
    desk = Desk.followed(full)
    reg, scored = registry(), 0
    for step in range(600):
        new = desk.append(LOOKBACK + step)
        for root in candidates(new):
            ts = int(new[root].ts.timestamp()) * 10**9
            if scored % 4 == 0:
                desk.check(reg, root, new[root])
            else:
                reg.score(root, new[root], desk.frames)
                fresh = LiveFeatures()
                fresh.update(desk.ref)
                names, values = fresh.row(root, ts)
                assert reg.rows[root][1] == names and np.array_equal(reg.rows[root][2], values, equal_nan=True)
            scored += 1
    assert scored > 400 and len(reg.live.histories["GC"]) == 2 * LOOKBACK
    i = LOOKBACK + 600
    for i in range(i, i + 2 * LOOKBACK + 1):  # one bar more than kept, none scored
        new = desk.append(i)
    desk.check(reg, "CL", new["CL"])
    assert not reg.errors


def test_a_frame_set_anew_is_followed_even_with_more_bars_appended_since_than_before(registry):
    """A frame set anew (other prices: the bar store's, not the stream's) and then more bars appended to it
    than the scorer had seen of the old one: the scorer follows the new frame, never the old history; and
    so it does with other BarFrames whose marks happen to be the same."""
    full = strategy_bars(IBS_A, LOOKBACK + 10, seed=41, start="2026-02-02")
    other = strategy_bars(IBS_A, LOOKBACK + 10, seed=43, start="2026-02-02")  # the same hours, other prices
    desk = Desk.followed(full)
    reg = registry()
    for i in range(LOOKBACK, LOOKBACK + 2):
        new = desk.append(i)
    desk.check(reg, "CL", new["CL"])
    desk.bars["CL"] = bars_of(other["CL"], "CL")
    desk.set("CL", 0, LOOKBACK + 2)
    for i in range(LOOKBACK + 2, LOOKBACK + 5):
        new = desk.append(i)
    for root in ("CL", "GC"):  # GC's row reads CL's cross features
        desk.check(reg, root, new[root])
    again = Desk.followed(other)  # other BarFrames whose marks are the same
    for i in range(LOOKBACK, LOOKBACK + 5):
        new = again.append(i)
    assert again.frames.mark("GC") == desk.frames.mark("GC")
    again.check(reg, "GC", new["GC"])


@pytest.fixture
def frames_read(monkeypatch):
    """Every frame BarFrames makes or hands out (its __getitem__), by root."""
    read = []
    original = BarFrames.__getitem__

    def spy(self, root):
        read.append(root)
        return original(self, root)

    monkeypatch.setattr(BarFrames, "__getitem__", spy)
    return read


def test_a_candidate_builds_no_frame_once_its_roots_are_followed(registry, frames_read, monkeypatch):
    """After the first score (each root's frame read once), the candidates of the hours after it read no frame
    and make none (no frame_from_bars); a frame set anew is read once, at the next score."""
    full = strategy_bars(IBS_A, LOOKBACK + 200, seed=31, start="2026-02-02")
    desk = Desk.followed(full, keep=LOOKBACK + 24)
    reg, made, reads = registry(), [], []
    monkeypatch.setattr(hours, "frame_from_bars", lambda bars: made.append(len(bars)) or frame_from_bars(bars))
    for step in range(200):
        if step == 100:
            desk.set("GC", step, LOOKBACK + step)
        new = desk.append(LOOKBACK + step)
        for root in candidates(new):
            frames_read.clear(), made.clear()
            reg.score(root, new[root], desk.frames)
            reads.append((step, sorted(frames_read), len(made)))
    first, *after = reads
    assert set(first[1]) == set(IBS_A)  # the first score follows every frame
    reread = [r for r in after if r[1]]
    assert [r[1:] for r in reread] == [(["GC"], 1)] and reread[0][0] >= 100  # GC's frame set anew: read once
    assert len(after) > 100 and not reg.errors


def test_a_bar_twice_or_out_of_order_is_refused_as_from_the_frame(registry):
    """A bar appended twice (or one before the last): the scorer fails as the frame path fails (the model
    unavailable, its policy applied, one alert naming the root), and a new registry refuses the frame too."""
    full = strategy_bars(IBS_A, LOOKBACK + 40, seed=37, start="2026-02-02")
    desk = Desk.followed(full)
    reg = registry()
    for i in range(LOOKBACK, LOOKBACK + 10):
        new = desk.append(i)
    assert not np.isnan(desk.check(reg, "CL", new["CL"]))
    desk.frames.append(new["HG"])  # HG's bar of the hour once more
    assert np.isnan(reg.score("CL", new["CL"], desk.frames))  # skip_entries: no score
    assert "HG: bars are not in time order (or a bar is there twice)" in reg.errors["CL"]
    assert len(registry.alerts) == 1 and "ML model for CL unavailable" in registry.alerts[0][0][1]
    again = registry()
    assert np.isnan(again.score("GC", new["GC"], desk.frames))
    assert "HG: bars are not in time order" in again.errors["GC"]
    desk = Desk.followed(full)  # a bar before the last, in a fresh desk
    reg = registry()
    new = desk.append(LOOKBACK)
    desk.check(reg, "6A", new["6A"])
    desk.frames.append(desk.bars["6C"][LOOKBACK - 5])
    assert np.isnan(reg.score("6A", new["6A"], desk.frames)) and "6C: bars are not in time order" in reg.errors["6A"]
