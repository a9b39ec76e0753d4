"""Run the `celery` command with the wall clock shifted by a fixed offset (time-machine).

    python -m tests.e2e.clockshift --offset SECONDS -- -A pineops worker ...

The process (and its forked pool children) sees `time.time()`, `datetime.now()` and friends as
real time + SECONDS, still ticking at the real rate; `time.monotonic()` and `time.sleep()` are not
shifted, so Celery's loops and timeouts behave normally. Processes started with the same offset
share one simulated clock, whenever each of them starts.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m tests.e2e.clockshift --offset SECONDS -- CELERY_ARGS...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="clockshift")
    parser.add_argument("--offset", type=float, required=True, help="seconds added to the wall clock")
    opts = parser.parse_args(argv[:split])

    import time_machine

    time_machine.travel(time.time() + opts.offset, tick=True).start()

    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *argv[split + 1:]]
    celery_main()


if __name__ == "__main__":
    main()
