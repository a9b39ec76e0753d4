"""ML scoring speed: features and score of one entry candidate, the live numpy path beside the pandas path.

The demo's strategy ibs_a (6A, 6C, 6M, CL, GC, HG) with the shipped demo models (models/, forests served from
their arrays as the worker serves them), on strategies.synthetic bars fed hour by hour as the worker holds them
(each root's frame gets its bar appended and is kept to 2 × LOOKBACK bars). At every IBS entry candidate both
paths are timed, in alternating order, over the same frames: the subject, what trading.execution.scoring does
(LiveFeatures brought up to the frames, then the row, then LoadedModel.probability_of; the first candidate of
an hour pays for the new bars), and the reference, what it did before (features.feature_row, a DataFrame
per candidate, then LoadedModel.probability). Both scores must be equal, or the script stops. Repeated over
consecutive blocks of hours; per block: candidates, p50 / p99 / max in ms of each path and their ratio,
the numpy path's p99 / max in CPU time of the thread (on a loaded machine the wall-clock tail is mostly
time the process was not running: other processes' time slices), and the load average. Nothing is asserted
on time.
Run: .venv/bin/python bench/scoring_speed.py [--hours 300] [--repeat 3]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.common import load_average  # noqa: E402
from strategies.features import LOOKBACK, LiveFeatures, feature_names, feature_row  # noqa: E402
from strategies.forest import read_array_forest  # noqa: E402
from strategies.ibs import entry_candidate  # noqa: E402
from strategies.ml import load  # noqa: E402
from strategies.params import IBSParams  # noqa: E402
from strategies.synthetic import strategy_bars  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ["6A", "6C", "6M", "CL", "GC", "HG"]  # trading.demo's ibs_a
WARMUP = LOOKBACK  # hours held before the first timed one, as the worker's feature history


class CandidateBar:
    __slots__ = ("ts", "open", "high", "low", "close")

    def __init__(self, ts, row):
        self.ts, self.open, self.high, self.low, self.close = ts, row[0], row[1], row[2], row[3]


def subject(live: LiveFeatures, model, frames, root: str, ts: int) -> float:
    live.update(frames)
    return model.probability_of(*live.row(root, ts))


def reference(model, frames, root: str, ts: int) -> float:
    return float(model.probability(feature_row(frames, root, ts).to_frame().T)[0])


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def block(full: dict[str, pd.DataFrame], models: dict, start: int, hours: int, params: IBSParams) -> dict:
    """Hours [start, start + hours) after the frames were filled with the WARMUP hours before `start`."""
    frames = {r: f.iloc[max(0, start - WARMUP):start].reset_index(drop=True) for r, f in full.items()}
    live = LiveFeatures()
    live.update(frames)  # the worker's registry is built with the frames it starts from
    first = int(frames["CL"]["ts"].iloc[-1])
    for name, model in models.items():  # each path once, untimed: the calendar's and the models' first use
        subject(live, model, frames, name, first), reference(model, frames, name, first)
    times = {"numpy": [], "pandas": [], "numpy_cpu": []}
    for step, i in enumerate(range(start, start + hours)):
        for root in ROOTS:
            frames[root] = pd.concat([frames[root], full[root].iloc[i:i + 1]], ignore_index=True).tail(2 * LOOKBACK)
        ts = int(full["CL"]["ts"].iloc[i])
        when = pd.Timestamp(ts, tz="UTC").to_pydatetime()
        for root in ROOTS:
            row = full[root].iloc[i][["open", "high", "low", "close"]].to_numpy(dtype=float)
            if entry_candidate(CandidateBar(when, row), params, 3600) is None:
                continue
            order = ("numpy", "pandas") if (step + len(times["numpy"])) % 2 == 0 else ("pandas", "numpy")
            got = {}
            for name in order:
                t0, c0 = time.perf_counter(), time.thread_time()
                got[name] = (subject(live, models[root], frames, root, ts) if name == "numpy"
                             else reference(models[root], frames, root, ts))
                times[name].append(time.perf_counter() - t0)
                if name == "numpy":
                    times["numpy_cpu"].append(time.thread_time() - c0)
            if not same(got["numpy"], got["pandas"]):
                raise SystemExit(f"{root} at {when:%Y-%m-%d %H:%M}: numpy score {got['numpy']!r} != pandas "
                                 f"{got['pandas']!r}")
    return {k: np.array(v) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=300, help="hours per block")
    parser.add_argument("--repeat", type=int, default=3, help="blocks, one after the other")
    args = parser.parse_args(argv)
    params = IBSParams()
    models = {r: load(r, ROOT / "models", feature_names(ROOTS, r), reader=read_array_forest) for r in ROOTS}
    full = strategy_bars(ROOTS, WARMUP + args.hours * args.repeat + 1, seed=19, start="2026-01-05")
    print(f"ML scoring per entry candidate, ibs_a's {len(ROOTS)} roots and demo models; {args.hours} hours a block, "
          f"{args.repeat} blocks; ms")
    print(f"{'block':>5} {'cands':>5}  {'numpy p50':>9} {'p99':>7} {'max':>7}  {'pandas p50':>10} {'p99':>7} "
          f"{'max':>7}  {'p50 ratio':>9}  {'numpy cpu p99':>13} {'max':>6}  load")
    for k in range(args.repeat):
        load_before = load_average()
        t = block(full, models, WARMUP + k * args.hours, args.hours, params)
        n, p = t["numpy"], t["pandas"]
        print(f"{k + 1:>5} {len(n):>5}  {np.median(n):>9.3f} {np.percentile(n, 99):>7.3f} {n.max():>7.3f}  "
              f"{np.median(p):>10.2f} {np.percentile(p, 99):>7.2f} {p.max():>7.2f}  "
              f"{np.median(p) / np.median(n):>8.0f}×  {np.percentile(t['numpy_cpu'], 99):>13.3f} "
              f"{t['numpy_cpu'].max():>6.3f}  {load_before:.2f} → {load_average():.2f}")
    print("scores: the numpy path's equal to the pandas path's at every candidate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
