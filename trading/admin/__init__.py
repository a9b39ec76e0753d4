"""Admin registrations, one module per models module; the site itself is pineops.admin_site."""
from . import drift, instruments, ops, orders, risk, strategies, trades  # noqa: F401
