"""Wrong environment values stop every entry point at once with one line naming the variable and the
forms it accepts — never a traceback, never a start on a half-understood configuration."""
import os
import subprocess
import sys

import pytest

from pineops.envcheck import environment_problems
from tests.e2e.appliance import ROOT

BAD = [
    ("DATABASE_URL", "garbage"), ("DATABASE_URL", "mysql://u@h/db"), ("DATABASE_URL", "postgres://h:99999/db"),
    ("DATABASE_URL", "sqlite://"), ("REDIS_URL", "redis://x:99999/0"), ("REDIS_URL", "http://127.0.0.1:6379"),
    ("CELERY_BROKER_URL", "amqp://guest@127.0.0.1//"), ("DATABENTO_GATEWAY", "localhost"),
    ("DATABENTO_GATEWAY", "127.0.0.1:0"), ("PINEOPS_WEB_BIND", "8000"), ("PINEOPS_WEB_WORKERS", "two"),
    ("DEBUG", "maybe"), ("PINEOPS_START_REDIS", "yes please"), ("PINEOPS_DEMO", "true"), ("POLICY_KILLSWITCH", "haltt"),
    ("SECURE_HSTS_SECONDS", "-1"), ("PINEOPS_CLAIM_LEASE_SECONDS", "0"), ("PINEOPS_DEMO_SPEED", "NaN"),
    ("LOG_LEVEL", "LOUD"), ("PINEOPS_TRADERSPOST_RATE_LIMITS", "60"), ("PINEOPS_TRADERSPOST_RATE_LIMITS", "0/60"),
    ("PINEOPS_TRADERSPOST_RATE_LIMITS", "60/0"), ("PINEOPS_TRADERSPOST_RATE_LIMITS", "60/60,,500/3600"),
    ("PINEOPS_TRADERSPOST_RATE_LIMITS", "60/inf"), ("PINEOPS_MARKET_CLOCK", "replay"), ("PINEOPS_MARKET_CLOCK", ""),
    ("PINEOPS_ROLES", "web,wrokers"), ("PINEOPS_ROLES", "all"), ("PINEOPS_WORKER_STRATEGIES", "ibs_a,IBS B"),
    ("PINEOPS_WORKER_STRATEGIES", "ibs_a,,ibs_b"), ("PINEOPS_HOST_NAME", "host:1"), ("PINEOPS_BEAT_LOCK_SECONDS", "2"),
    ("PINEOPS_WORKER_LOCK_SECONDS", "2"), ("PINEOPS_WORKER_WAITS_FOR_LOCK", "maybe"),
    ("PINEOPS_DB_IDLE_TRANSACTION_SECONDS", "0"),
]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "DATABASE_URL"))}
    return {**env, "PINEOPS_ENV_FILE": "/dev/null", **extra}


@pytest.mark.parametrize("name, value", BAD)
def test_each_wrong_value_is_one_line_naming_the_variable(name, value):
    problems = environment_problems({name: value})
    assert len(problems) == 1 and problems[0].startswith(f"{name}: ")


@pytest.mark.parametrize("name, value", [("DATABASE_URL", "garbage"), ("POLICY_KILLSWITCH", "haltt"),
                                         ("REDIS_URL", "redis://x:99999/0")])
def test_manage_py_refuses_to_start_with_one_line_and_no_traceback(tmp_path, name, value):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(RUNTIME_DIR=str(tmp_path), **{name: value}), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {name}: ") and "Traceback" not in result.stderr


def test_good_values_pass():
    assert environment_problems({
        "DATABASE_URL": "postgres://pineops:pw@db:5432/pineops", "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABENTO_GATEWAY": "127.0.0.1:13000", "PINEOPS_WEB_BIND": "0.0.0.0:8000", "DEBUG": "False",
        "PINEOPS_DEMO": "1", "POLICY_KILLSWITCH": "Halt", "PINEOPS_DEMO_SPEED": "1200", "LOG_LEVEL": "info",
        "SECURE_HSTS_SECONDS": "3600", "PINEOPS_TRADERSPOST_RATE_LIMITS": "60/60, 500/3600"}) == []


def test_roles_and_worker_strategies_read_comma_lists_with_every_role_by_default():
    from pineops.envcheck import ROLES, roles, worker_strategies

    assert roles(None) == roles("") == roles(" ") == ROLES == ("web", "hub", "workers", "celery", "beat")
    assert roles("beat, Web,web") == ("web", "beat")
    assert worker_strategies(None) is worker_strategies("") is None
    assert worker_strategies("ibs_b, ibs_a") == ("ibs_a", "ibs_b")
    problems = environment_problems({"PINEOPS_ROLES": "hub,wrokers,bat"})
    assert problems == ["PINEOPS_ROLES: 'wrokers', 'bat' are not roles; use a comma list of web, hub, workers, "
                        "celery, beat (default: all of them)"]


def test_the_rate_limits_setting_reads_count_per_seconds_pairs():
    from pineops.envcheck import rate_limits

    assert rate_limits("60/60,500/3600") == ((60, 60.0), (500, 3600.0))
    assert rate_limits(" 20/5 ") == ((20, 5.0),)
