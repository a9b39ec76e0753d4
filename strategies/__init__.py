"""PineOps strategy library: bars, calendar, indicators, IBS, coordinator, features, ML, backtest.

Framework-free on purpose: nothing here imports Django, so the same decision code runs in
the backtest, the benchmarks and the live worker.
"""
