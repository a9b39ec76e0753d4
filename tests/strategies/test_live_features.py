"""strategies.features.LiveFeatures: the live feature rows from numpy arrays kept bar by bar are the pandas
path's (feature_row), and the demo models score them the same, decide the same; IBSParams parses once."""
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategies.calendar import session_dates
from strategies.features import LOOKBACK, LiveFeatures, feature_names, feature_row
from strategies.forest import read_array_forest
from strategies.ibs import entry_candidate, in_entry_window, is_flat_bar
from strategies.ml import load
from strategies.params import IBSParams, ParameterError
from strategies.synthetic import strategy_bars

MODELS = Path(__file__).resolve().parents[2] / "models"
IBS_A = ["6A", "6C", "6M", "CL", "GC", "HG"]


def with_edges() -> tuple[dict[str, pd.DataFrame], int]:
    """Four roots over Christmas and New Year (sessions folded over the holidays), with what makes NaN:
    6A missing every 7th bar and a whole day, CL flat for 40 bars from the first session start after bar 300
    (no IBS, no session range, no deviation, no true range), GC bars with high == low, HG starting 300 bars
    after the others (no cross features before). Also returns where CL's flat bars begin."""
    frames = strategy_bars(["6A", "CL", "GC", "HG"], 900, seed=5, start="2025-12-15")
    a = frames["6A"]
    frames["6A"] = a[(np.arange(len(a)) % 7 != 3) & ~a.index.isin(range(400, 423))].reset_index(drop=True)
    cl = frames["CL"].copy()
    days = session_dates(cl["ts"].to_numpy())
    flat = 300 + int(np.flatnonzero(days[300:] != days[299:-1])[0])
    cl.loc[flat:flat + 39, ["open", "high", "low", "close"]] = 61.25
    frames["CL"] = cl
    gc = frames["GC"].copy()
    gc.loc[::53, "high"] = gc.loc[::53, "low"] = gc.loc[::53, "close"]
    frames["GC"] = gc
    frames["HG"] = frames["HG"].iloc[300:].reset_index(drop=True)
    return frames, flat


def hours_of(frames: dict[str, pd.DataFrame]):
    """The worker's view: hour by hour, each root's bar of that hour appended to its frame (kept to 2 × LOOKBACK)."""
    stamps = np.unique(np.concatenate([f["ts"].to_numpy() for f in frames.values()]))
    held = {r: f.iloc[:0] for r, f in frames.items()}
    rows = {r: dict(zip(f["ts"].to_numpy().tolist(), range(len(f)))) for r, f in frames.items()}
    for step, ts in enumerate(stamps.tolist()):
        for root, frame in frames.items():
            if ts in rows[root]:
                i = rows[root][ts]
                held[root] = pd.concat([held[root], frame.iloc[i:i + 1]], ignore_index=True).tail(LOOKBACK * 2)
        yield step, ts, dict(held)


def assert_same_row(names, values, ref: pd.Series):
    """Names and NaN exactly; IBS, returns, range/ATR, hour and weekday to the bit or 1e-12; z-scores to 1e-10
    (pandas' rolling std is itself that far from the exact value: test_z_scores_are_exact_to_1e_12)."""
    assert names == list(ref.index)
    r = ref.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(values), np.isnan(r)), [n for n, a, b in zip(names, values, r)
                                                            if np.isnan(a) != np.isnan(b)]
    ok = ~np.isnan(r)
    z = np.array([n.endswith(("z_24", "z_120")) for n in names]) & ok
    np.testing.assert_allclose(values[ok & ~z], r[ok & ~z], rtol=1e-12, atol=0)
    assert np.abs(values[z] - r[z]).max(initial=0.0) <= 1e-10


def test_live_rows_equal_the_pandas_rows_bar_by_bar_through_gaps_warmup_and_flat_windows():
    (frames, flat), live = with_edges(), LiveFeatures()
    roots, compared, nan_seen = sorted(frames), 0, set()
    for step, ts, held in hours_of(frames):  # (the roots share their hours: step i is CL's bar i)
        live.update(held)  # every hour, as the worker's frames grow: only the new bar is appended
        # Every hour through the warmup and CL's flat bars, every root; elsewhere one hour in five, one root.
        around_flat = flat - 3 <= step <= flat + 45
        if step > 130 and not around_flat and step % 5:
            continue
        for root in roots if around_flat or step < 130 else [roots[step % len(roots)]]:
            if not len(held[root]) or int(held[root]["ts"].iloc[-1]) != ts:
                continue
            names, values = live.row(root, ts)
            assert_same_row(names, values, feature_row(held, root, ts))
            nan_seen |= {n for n, v in zip(names, values) if np.isnan(v)}
            compared += 1
    assert compared > 200
    # Every own feature but the clock was NaN somewhere (warmup, flat bars, flat windows), and the cross ones.
    assert {"ibs_1h", "ibs_session", "ret_24", "z_24", "z_120", "range_atr", "x_HG_z_24"} <= nan_seen


def test_a_frame_replaced_changed_or_shortened_is_followed_not_appended_to():
    frames = strategy_bars(["6A", "CL"], 600, seed=2)
    live = LiveFeatures()
    live.update(frames)
    ts = int(frames["CL"]["ts"].iloc[-1])
    changed = {**frames, "CL": frames["CL"].assign(close=frames["CL"]["close"] * 1.01)}  # same times, other prices
    changed["CL"]["high"] = changed["CL"][["high", "close"]].max(axis=1)
    live.update(changed)
    assert_same_row(*live.row("CL", ts), feature_row(changed, "CL", ts))
    shorter = {r: f.iloc[:-30].reset_index(drop=True) for r, f in frames.items()}  # bars gone at the end
    live.update(shorter)
    with pytest.raises(KeyError, match="CL has no bar at"):
        live.row("CL", ts)
    earlier = int(shorter["CL"]["ts"].iloc[-1])
    assert_same_row(*live.row("CL", earlier), feature_row(shorter, "CL", earlier))
    alone = {"CL": shorter["CL"]}  # a root left out: its cross features go with it, as in feature_row
    live.update(alone)
    names, values = live.row("CL", earlier)
    assert names == feature_names(["CL"], "CL")
    assert_same_row(names, values, feature_row(alone, "CL", earlier))
    twice = {"CL": pd.concat([shorter["CL"], shorter["CL"].iloc[-1:]], ignore_index=True)}
    with pytest.raises(ValueError, match="CL: bars are not in time order"):
        live.update(twice)


def test_z_scores_are_exact_to_1e_12():
    """The two-pass z-score from the arrays against exact rational arithmetic (the reference pandas' rolling
    std reaches 1e-11 from it: a window's value depends on the online sums since the window's start)."""
    frames = strategy_bars(["CL", "6M", "GC"], 700, seed=9)
    live = LiveFeatures()
    live.update(frames)
    worst = 0.0
    for root, frame in frames.items():
        close = frame["close"].to_numpy()
        for i in range(200, 700, 23):
            names, values = live.row(root, int(frame["ts"].iloc[i]))
            for n in (24, 120):
                window = [Fraction(v) for v in close[i - n + 1:i + 1]]
                mean = sum(window) / n
                var = sum((v - mean) ** 2 for v in window) / n
                exact = float(Fraction(close[i]) - mean) / float(var) ** 0.5
                worst = max(worst, abs(values[names.index(f"z_{n}")] - exact))
    assert worst <= 1e-12


@pytest.fixture(scope="module")
def demo_models():
    return {r: load(r, MODELS, feature_names(IBS_A, r), reader=read_array_forest) for r in IBS_A}


def test_the_demo_models_score_and_decide_every_candidate_as_on_the_pandas_rows(demo_models):
    """The demo's six roots hour by hour as the worker sees them; at every IBS entry candidate the score from
    the numpy row is the pandas row's, bit for bit, and so is the decision against the model's threshold."""
    frames = strategy_bars(IBS_A, 560, seed=31, start="2026-03-02")  # the US daylight-saving change inside
    live, params, scored, taken = LiveFeatures(), IBSParams(), 0, 0
    for step, ts, held in hours_of(frames):
        live.update(held)
        if step < 125:  # a score needs z_120's history
            continue
        when = pd.Timestamp(ts, tz="UTC").to_pydatetime()
        for root in IBS_A:
            bar = held[root].iloc[-1]
            if int(bar["ts"]) != ts or entry_candidate(_bar(bar, when), params, 3600) is None:
                continue
            model = demo_models[root]
            ref = float(model.probability(feature_row(held, root, ts).to_frame().T)[0])
            got = model.probability_of(*live.row(root, ts))
            assert got == ref or (np.isnan(got) and np.isnan(ref)), (root, ts, got, ref)
            assert (got >= model.threshold) == (ref >= model.threshold)
            scored += 1
            taken += got >= model.threshold
    assert scored > 80 and taken  # enough candidates, some of them above their model's threshold


def _bar(row, when):
    from types import SimpleNamespace

    return SimpleNamespace(ts=when, open=row["open"], high=row["high"], low=row["low"], close=row["close"])


def test_a_single_row_scores_bit_for_bit_as_the_batch(demo_models):
    rng = np.random.default_rng(4)
    for root, model in demo_models.items():
        forest = model.model
        x = rng.choice(forest.threshold[np.isfinite(forest.threshold)], size=(300, forest.n_features_in_))
        x += rng.choice([0.0, 1e-7, -1e-7], size=x.shape)  # on and beside the splits, where float32 shows
        batch = forest.predict_proba(x)
        single = np.vstack([forest.predict_proba(row[None, :]) for row in x])
        assert np.array_equal(single, batch), root


def test_params_are_parsed_once_at_construction_with_the_same_errors(monkeypatch):
    import strategies.params as module

    p = IBSParams(entry_windows="01:00-03:00,17:00-24:00", flat_time="15:30", window_tz="America/Chicago")
    assert p.windows == ((60, 180), (1020, 1440)) and p.flat_minute == 930 and str(p.tz) == "America/Chicago"

    def never(*args):
        raise AssertionError("parsed again")

    monkeypatch.setattr(module, "parse_windows", never)
    monkeypatch.setattr(module, "parse_clock", never)
    when = pd.Timestamp("2026-06-01 20:30", tz="UTC").to_pydatetime()  # 15:30 Chicago
    assert not in_entry_window(when, p) and is_flat_bar(when, 3600, p)
    monkeypatch.undo()
    assert p == IBSParams(entry_windows="01:00-03:00,17:00-24:00", flat_time="15:30", window_tz="America/Chicago")
    assert hash(p) == hash(IBSParams(**{k: getattr(p, k) for k in module.PARAM_NAMES}))
    assert repr(p).count("windows") == 1 and set(module.dataclasses.asdict(p)) == set(module.PARAM_NAMES)
    with pytest.raises(ParameterError, match="entry_windows: window '05:00-04:00' ends before it starts"):
        IBSParams(entry_windows="05:00-04:00")
    with pytest.raises(ParameterError, match="flat_time: cannot parse '25:00'"):
        p.with_overrides({"flat_time": "25:00"})


def appended_hours(frames: dict[str, pd.DataFrame], keep: int):
    """hours_of bar by bar: each hour the new bar of each root that has one (start in ns, high, low, close),
    and the frames as the worker's BarFrames makes them (the last `keep` bars; one the caller sets in the
    dict yielded is the one the next bars are appended to)."""
    stamps = np.unique(np.concatenate([f["ts"].to_numpy() for f in frames.values()]))
    held = {r: f.iloc[:0] for r, f in frames.items()}
    rows = {r: dict(zip(f["ts"].to_numpy().tolist(), range(len(f)))) for r, f in frames.items()}
    for step, ts in enumerate(stamps.tolist()):
        new = {}
        for root, frame in frames.items():
            if ts in rows[root]:
                i = rows[root][ts]
                held[root] = pd.concat([held[root], frame.iloc[i:i + 1]], ignore_index=True).tail(keep)
                new[root] = (ts, *map(float, frame.iloc[i][["high", "low", "close"]]))
        yield step, ts, held, new


def assert_same_as_fresh(live: LiveFeatures, held: dict[str, pd.DataFrame], root: str, ts: int):
    """The row is the pandas path's and that of a LiveFeatures built afresh from the frames."""
    names, values = live.row(root, ts)
    assert_same_row(names, values, feature_row(held, root, ts))
    fresh = LiveFeatures()
    fresh.update(held)
    fresh_names, fresh_values = fresh.row(root, ts)
    assert names == fresh_names and np.array_equal(values, fresh_values, equal_nan=True), (root, ts)


def test_bars_appended_one_by_one_give_the_pandas_rows_with_the_front_dropped_a_root_added_and_frames_set_anew():
    """with_edges' roots bar by bar through LiveFeatures.append (the worker's scorer), frames kept to 130 bars:
    fewer than LOOKBACK, so the dropped front is inside every window (the worker's own keep: tests/execution/
    test_scoring_live.py). GC joins at bar 350 (followed from its frame, appended to after), every frame is
    followed again at bar 500 (set anew, one price changed). At every IBS entry candidate of the first 640 hours
    (6A's gaps, CL's flat bars, HG's late start) the row is the pandas path's and a fresh build's; every 40
    hours a bar 30 hours back too (its window starts at the frame's dropped front)."""
    (frames, _), params, keep = with_edges(), IBSParams(), 130
    live, roots, compared = LiveFeatures(), ["6A", "CL", "HG"], 0
    for step, ts, held, new in appended_hours(frames, keep):
        if step == 0:
            live.update({r: held[r] for r in roots})
            continue
        if step == 640:
            break
        if step == 500:  # every frame set anew, one of CL's prices in it changed
            held["CL"] = held["CL"].copy()
            held["CL"].loc[held["CL"].index[-50], "close"] = held["CL"]["close"].iloc[-50] * 1.001
            held["CL"].loc[held["CL"].index[-50], "high"] = held["CL"][["high", "close"]].iloc[-50].max()
            for root in roots:
                live.follow(root, held[root])
        else:
            for root, bar in new.items():
                if root in roots:
                    live.append(root, *bar, keep=keep)
        if step == 350:  # GC joins: followed from its frame as it is now (this hour's bar in it)
            roots.append("GC")
            live.follow("GC", held["GC"])
            live.keep_roots(roots)
        mine = {r: held[r] for r in roots}
        when = pd.Timestamp(ts, tz="UTC").to_pydatetime()
        for root in [r for r in roots if r in new]:
            if entry_candidate(_bar(held[root].iloc[-1], when), params, 3600) is not None:
                assert_same_as_fresh(live, mine, root, ts)
                compared += 1
        if step % 40 == 0 and len(held["CL"]) > 30:
            assert_same_as_fresh(live, mine, "CL", int(held["CL"]["ts"].iloc[-30]))
    assert compared > 200 and len(live.histories["CL"]) == keep


def test_a_bar_appended_twice_or_before_the_last_is_refused_and_the_history_built_again():
    frames = strategy_bars(["6A", "CL"], 300, seed=3)
    live = LiveFeatures()
    live.update({r: f.iloc[:250] for r, f in frames.items()})
    bar = lambda r, i: (int(frames[r]["ts"].iloc[i]), *map(float, frames[r].iloc[i][["high", "low", "close"]]))  # noqa: E731
    live.append("CL", *bar("CL", 250), keep=480)
    for again in (250, 200):  # the same bar, an earlier one
        with pytest.raises(ValueError, match="CL: bars are not in time order"):
            live.append("CL", *bar("CL", again), keep=480)
        assert "CL" not in live.histories  # refused: nothing half followed is kept
        live.follow("CL", frames["CL"].iloc[:251])
    live.append("6A", *bar("6A", 250), keep=480)
    held = {r: f.iloc[:251] for r, f in frames.items()}
    ts = int(frames["CL"]["ts"].iloc[250])
    for root in held:
        assert_same_as_fresh(live, held, root, ts)
