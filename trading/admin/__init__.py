"""Admin registrations, one module per models module; the site itself is pineops.admin_site."""
from . import backtests, drift, instruments, ops, orders, risk, strategies, trades  # noqa: F401
