"""Shared fixtures: secrets that must never leak, isolated runtime dirs, Redis prefixes."""
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


def glbx_samples() -> Path:
    """The real GLBX sample files (../shared/data/databento beside the checkout, or PINEOPS_GLBX_SAMPLES)."""
    if os.environ.get("PINEOPS_GLBX_SAMPLES"):
        return Path(os.environ["PINEOPS_GLBX_SAMPLES"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "databento"
        if candidate.is_dir():
            return candidate
    pytest.fail("real GLBX samples not found: put shared/ beside the checkout or set PINEOPS_GLBX_SAMPLES")
