"""The daily drift report: live decisions beside the backtest of the same session (trading.drift.report)."""
