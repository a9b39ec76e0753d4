"""Shared fixtures: secrets that must never leak, isolated runtime dirs, Redis prefixes."""
import json
import os
import secrets
import uuid
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)
SECRETS_FILE = ARTIFACTS / "secrets.txt"


def remember_secret(value: str) -> str:
    """Record a secret a test configures, so `make test` can grep every log for it afterwards."""
    with SECRETS_FILE.open("a") as f:
        f.write(value + "\n")
    return value


@pytest.fixture
def webhook_env(monkeypatch):
    """Distinctive secret webhook URLs in the environment, as the demo strategies reference them."""
    values = {
        "TRADERSPOST_IBS_A_WEBHOOK": f"http://127.0.0.1:9/trading/webhook/{uuid.uuid4()}/{secrets.token_hex(8)}",
        "TRADERSPOST_IBS_B_WEBHOOK": f"http://127.0.0.1:9/trading/webhook/{uuid.uuid4()}/{secrets.token_hex(8)}",
        "DISCORD_WEBHOOK_URL": f"http://127.0.0.1:9/api/webhooks/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(24)}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, remember_secret(value))
    return values


@pytest.fixture
def runtime_dir(tmp_path, settings):
    settings.RUNTIME_DIR = tmp_path
    return tmp_path


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"pineops-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def broker():
    """A local TradersPost stand-in (records every POST, answers as scripted)."""
    from trading.sim.traderspost import TradersPostStandIn

    with TradersPostStandIn() as standin:
        yield standin


def glbx_samples() -> Path:
    """The real GLBX sample files: tests/data/glbx (Databento's own test data, see its README), or
    PINEOPS_GLBX_SAMPLES to run the same tests over another set."""
    path = Path(os.environ.get("PINEOPS_GLBX_SAMPLES") or Path(__file__).parent / "data" / "glbx")
    if not (path / "test_data.trades.dbn.zst").is_file():
        pytest.fail(f"real GLBX samples not found in {path}")
    return path


# --- the fault suite's summary table ------------------------------------------------------------
# Rows go to a JSON-lines file, so the table is whole when pytest-xdist runs tests in several workers. Each row
# names its pass (the suite's database); `make test` keeps the rows of both passes (PINEOPS_FAULT_ROWS=keep),
# so one table covers SQLite and PostgreSQL.
FAULT_ROWS_FILE = ARTIFACTS / "faults-rows.jsonl"
FAULT_COLUMNS = ("scenario", "pass", "runs", "orders expected", "orders received", "duplicates", "lost", "errors")


def _suite_database() -> str:
    return "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"


def _xdist_worker(config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    worker = _xdist_worker(config)
    if worker is None:
        if os.environ.get("PINEOPS_FAULT_ROWS") != "keep":
            FAULT_ROWS_FILE.unlink(missing_ok=True)  # a new run: a new table
    elif config.getoption("log_file", None) or config.getini("log_file"):
        # One log file per worker: two processes writing one file would overwrite each other.
        base = Path(config.getoption("log_file", None) or config.getini("log_file"))
        config.option.log_file = str(base.with_name(f"{base.stem}-{worker}{base.suffix}"))


@pytest.fixture
def fault_report():
    """`fault_report(scenario, runs=…, expected=…, received=…, duplicates=…, lost=…, errors=…)` adds a row to
    the table printed after the run (and written to test-artifacts/faults-summary.txt). Record before asserting."""
    def record(scenario: str, *, runs: int, expected: int, received: int, duplicates: int, lost: int, errors: int = 0):
        row = dict(zip(FAULT_COLUMNS, (scenario, _suite_database(), runs, expected, received, duplicates, lost,
                                       errors)))
        with FAULT_ROWS_FILE.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return record


def fault_table(rows: list[dict]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in FAULT_COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(FAULT_COLUMNS, widths))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(FAULT_COLUMNS, widths)) for r in rows]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, config):
    if _xdist_worker(config) is not None or not FAULT_ROWS_FILE.exists():
        return
    rows = [json.loads(line) for line in FAULT_ROWS_FILE.read_text().splitlines() if line.strip()]
    if not rows:
        return
    table = fault_table(sorted(rows, key=lambda r: (r["scenario"], r.get("pass", ""))))
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line(table)
    (ARTIFACTS / "faults-summary.txt").write_text(table + "\n")
