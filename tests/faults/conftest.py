"""Fixtures of the fault suite: the simulated desk of the order-path tests (tests/faults/simdesk.py)."""
from tests.faults.simdesk import desk  # noqa: F401 — a fixture, used by name
