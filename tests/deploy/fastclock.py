"""Run the `celery` command on a fast simulated clock (time-machine), so a beat lives a day of its schedules in
seconds:

    python -m tests.deploy.fastclock --start EPOCH --speed K --origin FILE -- -A pineops beat ...

Until FILE exists the clock stands at START - 1 h (the process starts, nothing is due). FILE holds the real
time (epoch seconds) the simulated START stands for; from then on `time.time()`, `datetime.now()` and friends
read START + (real - origin) × K, for every process given the same FILE, whenever each started. Beat's sleeps
between ticks are shortened by K (50 ms at most, 20 ms at least): its schedules keep their simulated times.
`time.monotonic()` and Redis's leases stay real: a lock's lease of 3 s lasts 3 real seconds (3 × K simulated).
"""
from __future__ import annotations

import argparse
import sys
import time
import types

TICK_MOST, TICK_LEAST = 0.05, 0.02  # real seconds between two beat ticks


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m tests.deploy.fastclock --start EPOCH --speed K --origin FILE -- CELERY_ARGS")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="fastclock")
    parser.add_argument("--start", type=float, required=True, help="the simulated epoch seconds at the origin")
    parser.add_argument("--speed", type=float, required=True, help="simulated seconds per real second")
    parser.add_argument("--origin", required=True, help="file with the real epoch seconds of the simulated start")
    opts = parser.parse_args(argv[:split])

    import _time_machine
    import time_machine

    start_ns, speed = int(opts.start * 1e9), opts.speed
    origin: list[int] = []

    class FastTraveller(time_machine.Traveller):
        def time_ns(self) -> int:
            if not origin:
                try:
                    with open(opts.origin) as f:
                        origin.append(int(float(f.read().strip()) * 1e9))
                except (OSError, ValueError):
                    return start_ns - 3600 * 10**9
            return start_ns + int((_time_machine.original_time_ns() - origin[0]) * speed)

    traveller = time_machine.travel(opts.start, tick=False).start()
    traveller.__class__ = FastTraveller

    import celery.beat

    class BeatTime(types.ModuleType):
        """celery.beat's `time`: its sleep between ticks shortened by the clock's speed."""

        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(min(max(seconds / speed, TICK_LEAST), TICK_MOST))

    celery.beat.time = BeatTime("time")

    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *argv[split + 1:]]
    celery_main()


if __name__ == "__main__":
    main()
