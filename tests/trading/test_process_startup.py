"""What the long-running processes import and check as they start (issue 19).

`runworker`, `sendorders`, `runhub` and `sync_workers` skip Django's system checks and the admin's
discovery; the checks still run in `manage.py check` and `manage.py boot` (the entrypoint's step before
supervisord starts any of them), the web process still discovers the admin as it starts, and a wrong
environment value still stops every process at once (pineops.envcheck, in the settings).
Imports are inspected in a fresh interpreter (this one has imported everything already).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command, load_command_class
from django.core.management.base import SystemCheckError

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["pandas", "pyarrow", "numpy", "sklearn", "scipy", "skops", "trading.admin", "pineops.urls", "celery",
         "django_celery_beat"]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "DATABASE_URL"))}
    return {**env, "PINEOPS_ENV_FILE": "/dev/null", "DJANGO_SETTINGS_MODULE": "pineops.settings", **extra}


def imported_after(argv0: str, code: str, tmp_path) -> list[str]:
    """HEAVY modules in sys.modules after django.setup() under `argv0` (as the process is started) and `code`."""
    script = (f"import sys, json; sys.argv = {argv0.split()!r}\n"
              "import django; django.setup()\n"
              f"{code}\n"
              f"print(json.dumps([m for m in {HEAVY!r} if sys.modules.get(m) is not None]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean_env(RUNTIME_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_order_sender_imports_neither_pandas_nor_sklearn_nor_pyarrow_nor_the_admin_nor_celery(tmp_path):
    """(django.contrib.admin itself is an installed app, imported by every Django process; its ModelAdmins,
    the dashboard and their pandas are what stays out; so do the Celery app and django-celery-beat.) Booking a trade needs the session date of its exit:
    that too without pandas, or numpy."""
    code = ("import trading.management.commands.sendorders\n"
            "from datetime import datetime, timezone\n"
            "from strategies.calendar import session_date\n"
            "from strategies.bars import Bar\n"
            "session_date(datetime(2026, 11, 26, 20, tzinfo=timezone.utc))\n"
            "Bar.from_message(Bar('CL', 'CLZ6', '1m', datetime(2026, 11, 25, tzinfo=timezone.utc),"
            " 1, 2, 0.5, 1.5, 3, 1).to_message())")
    assert imported_after("manage.py sendorders", code, tmp_path) == []


def test_the_worker_with_ml_off_never_imports_sklearn(tmp_path):
    code = ("import trading.management.commands.runworker\n"
            "from types import SimpleNamespace\n"
            "from trading.execution.scoring import ModelRegistry\n"
            "legs = {r: SimpleNamespace(row=SimpleNamespace(ml_enabled=False)) for r in ['6A', 'CL', 'GC']}\n"
            "registry = ModelRegistry(SimpleNamespace(name='ibs_a'), legs)\n"
            "assert registry.score('CL', None, {}) is None and not registry.models")
    found = imported_after("manage.py runworker", code, tmp_path)
    assert not {"sklearn", "scipy", "skops"} & set(found), found
    assert "trading.admin" not in found and "pineops.urls" not in found
    assert "celery" not in found and "django_celery_beat" not in found


def test_the_worker_with_ml_on_loads_its_forests_without_sklearn(tmp_path):
    code = ("import trading.management.commands.runworker\n"
            "from types import SimpleNamespace\n"
            "from trading.execution import scoring\n"
            "scoring.alert_warnings = lambda *a: None  # the model card's alerts need the database\n"
            "roots = ['6A', '6C', '6M', 'CL', 'GC', 'HG']\n"
            "legs = {r: SimpleNamespace(row=SimpleNamespace(ml_enabled=True)) for r in roots}\n"
            "registry = scoring.ModelRegistry(SimpleNamespace(name='ibs_a'), legs)\n"
            "assert sorted(registry.models) == roots and not registry.errors, registry.errors")
    found = imported_after("manage.py runworker", code, tmp_path)
    assert not {"sklearn", "scipy", "skops"} & set(found), found
    # pandas runs without pyarrow there (pineops.process.UNUSED_BY): its strings in Python objects
    assert "pandas" in found and "pyarrow" not in found, found


SCORES = """
import json
import numpy as np
from pathlib import Path
from strategies.features import build_features, feature_names
from strategies.forest import read_array_forest
from strategies.ml import load
from strategies.synthetic import strategy_bars
roots = ['6A', '6C', '6M', 'CL', 'GC', 'HG']
frames = strategy_bars(roots, 600, seed=7, start='2026-03-02')
table = build_features(frames, 'CL')
model = load('CL', Path('models'), feature_names(roots, 'CL'), reader=read_array_forest)
rows = table.iloc[-200:]
out = {'features': np.nan_to_num(rows.to_numpy(dtype=float), nan=-1e300).tolist(),
       'scores': model.probability(rows).tolist()}
print(json.dumps(out))
"""


def test_the_worker_without_pyarrow_computes_the_features_and_scores_of_a_process_with_it(tmp_path):
    """The pandas path of the features (the worker's warm-up and its check of the numpy path; its frames hold
    numbers only) and the model's scores over 200 hours of the demo's six roots: in `manage.py runworker`'s
    interpreter, pyarrow kept out, the same numbers to the bit as in one where pandas has it."""
    script = ("import sys; sys.argv = ['manage.py', 'runworker']\n"
              "import django; django.setup()\n"
              "assert sys.modules['pyarrow'] is None\n" + SCORES)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean_env(RUNTIME_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    worker = json.loads(done.stdout.strip().splitlines()[-1])
    here = subprocess.run([sys.executable, "-c", "import pyarrow\n" + SCORES], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=clean_env(RUNTIME_DIR=str(tmp_path)))
    assert here.returncode == 0, here.stderr[-3000:]
    reference = json.loads(here.stdout.strip().splitlines()[-1])
    assert len(worker["scores"]) == 200 and len(set(worker["scores"])) > 10
    assert worker["features"] == reference["features"] and worker["scores"] == reference["scores"]


def test_the_web_process_and_manage_py_check_still_discover_the_admin_as_they_start(tmp_path):
    assert "trading.admin" in imported_after("gunicorn pineops.wsgi", "", tmp_path)
    assert "trading.admin" in imported_after("manage.py check", "", tmp_path)
    assert "trading.admin" in imported_after("manage.py boot", "", tmp_path)


@pytest.mark.parametrize("argv0", ["gunicorn pineops.wsgi", "celery -A pineops beat", "manage.py boot"])
def test_the_processes_that_queue_or_run_tasks_keep_the_celery_app_and_the_periodic_tasks(tmp_path, argv0):
    code = ("import pineops\n"
            "from django.apps import apps\n"
            "assert pineops.celery_app.main == 'pineops' and apps.is_installed('django_celery_beat')")
    assert {"celery", "django_celery_beat"} <= set(imported_after(argv0, code, tmp_path))


@pytest.mark.parametrize("name", ["runworker", "sendorders", "runhub", "sync_workers"])
def test_the_long_running_commands_skip_the_system_checks(name):
    assert load_command_class("trading", name).requires_system_checks == []


def test_boot_still_runs_every_system_check():
    assert load_command_class("trading", "boot").requires_system_checks == "__all__"


@pytest.fixture
def failing_check():
    """A system check that reports an error, as a misconfigured admin or model would."""
    def misconfigured(app_configs=None, **kwargs):
        return [checks.Error("misconfigured on purpose", id="pineops.E999")]

    checks.register(misconfigured)
    yield
    checks.registry.registry.registered_checks.discard(misconfigured)


def test_a_failing_system_check_stops_boot_before_it_prepares_anything(failing_check, monkeypatch, capsys):
    from trading.management.commands import boot

    prepared = []
    monkeypatch.setattr(boot.Command, "handle", lambda self, *a, **kw: prepared.append(True))
    with pytest.raises(SystemExit) as stopped:  # as the entrypoint runs it (`set -e`: nothing else starts)
        load_command_class("trading", "boot").run_from_argv(["manage.py", "boot"])
    assert stopped.value.code == 1 and "pineops.E999" in capsys.readouterr().err
    assert prepared == []
    with pytest.raises(SystemCheckError, match="pineops.E999"):
        call_command("check")


def test_the_worker_starts_without_running_the_checks(failing_check, monkeypatch):
    from trading.management.commands import runworker

    started = []
    monkeypatch.setattr(runworker.Command, "handle", lambda self, *a, **kw: started.append(True))
    load_command_class("trading", "runworker").run_from_argv(["manage.py", "runworker", "--strategy", "ibs_a"])
    assert started == [True]


@pytest.mark.parametrize("command", ["runworker", "sendorders"])
def test_a_wrong_environment_value_still_stops_the_process_at_once(tmp_path, command):
    done = subprocess.run([sys.executable, "manage.py", command, "--strategy", "ibs_a"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=clean_env(RUNTIME_DIR=str(tmp_path), POLICY_KILLSWITCH="haltt"))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: POLICY_KILLSWITCH: "), done.stderr[-2000:]
