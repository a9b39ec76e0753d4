"""File paths the admin can set stay inside RUNTIME_DIR with their suffix: the database, `.env` and
anything outside are refused in the form with the field named, and a value written around the form
(the ORM) is refused again where the file is written — the database is never overwritten."""
import sqlite3

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.adminforms import strategy_form_data
from trading.models import Strategy
from trading.runtime_files import PROTECTED_DIRS, PROTECTED_NAMES

pytestmark = pytest.mark.django_db
HOSTILE = ["../pineops.sqlite3", "/etc/passwd", ".env", "{RUNTIME_DIR}/pineops.sqlite3", "pineops.sqlite3",
           "{RUNTIME_DIR}/../x.json", "a/../../b.json", "supervisor/workers.json", "hub_heartbeat.json",
           "secret_key", "x.json\x00.sqlite3", "..\\..\\x.json", "~/x.json", "{nope}.json", ".json", "redis/a.json"]


@pytest.fixture
def strategy(webhook_env, runtime_dir, settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo", verbosity=0)
    return Strategy.objects.get(name="ibs_a")


def refusal(strategy, value) -> str:
    strategy.heartbeat_file = value
    with pytest.raises(ValidationError) as err:
        strategy.full_clean()
    assert set(err.value.message_dict) == {"heartbeat_file"}
    return err.value.message_dict["heartbeat_file"][0]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_heartbeat_files_are_refused_with_the_field_named(strategy, value):
    assert "inside RUNTIME_DIR ending in .json" in refusal(strategy, value)


def test_a_symlink_planted_in_runtime_dir_is_judged_by_where_it_leads(strategy, runtime_dir):
    (runtime_dir / "trap.json").symlink_to(runtime_dir / "pineops.sqlite3")
    assert "protected file" in refusal(strategy, "trap.json")


def test_good_heartbeat_files_are_accepted_inside_runtime_dir(strategy, runtime_dir):
    for value, target in [("ibs_a_hb.json", "ibs_a_hb.json"), ("beats/{strategy}.json", "beats/ibs_a.json"),
                          ("{RUNTIME_DIR}/{strategy}_worker_heartbeat.json", "ibs_a_worker_heartbeat.json")]:
        strategy.heartbeat_file = value
        strategy.full_clean()
        assert strategy.heartbeat_path() == str((runtime_dir / target).resolve())


def test_the_admin_form_refuses_the_database_as_a_heartbeat_file(strategy, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-paths"))
    url = reverse("admin:trading_strategy_change", args=[strategy.pk])
    response = client.post(url, strategy_form_data(strategy, heartbeat_file="../pineops.sqlite3", _save="Save"))
    assert response.status_code == 200  # the form again, with the error
    assert "heartbeat_file" in response.context["adminform"].form.errors
    assert Strategy.objects.get(pk=strategy.pk).heartbeat_file == ""


def test_a_value_written_around_the_form_never_overwrites_the_database(strategy, runtime_dir, tmp_path):
    """The worker's heartbeat with heartbeat_file pointing at a database: the default file is written instead."""
    victim = runtime_dir / "pineops.sqlite3"
    with sqlite3.connect(victim) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (42)")
    Strategy.objects.filter(pk=strategy.pk).update(heartbeat_file="pineops.sqlite3")
    path = Strategy.objects.get(pk=strategy.pk).heartbeat_path()
    assert path == str(runtime_dir / "ibs_a_worker_heartbeat.json")
    with sqlite3.connect(victim) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(42,)]


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(
    ["..", ".", "a", "{strategy}", "{RUNTIME_DIR}", ".env", "pineops.sqlite3", "x.json", "redis", "/", "~", "\\"]),
    max_size=6).map("/".join)))
def test_fuzz_every_path_field_is_confined_or_refused(strategy, runtime_dir, value):
    strategy.heartbeat_file = value
    try:
        strategy.full_clean()
    except ValidationError as exc:
        assert "heartbeat_file" in exc.message_dict or not value.strip() or len(value) > 200
        return
    if not value.strip():
        return
    target = type(runtime_dir)(strategy.heartbeat_path())
    root = runtime_dir.resolve()
    assert root in target.parents and target.suffix == ".json"
    relative = target.relative_to(root)
    assert relative.parts[0] not in PROTECTED_DIRS and relative.name not in PROTECTED_NAMES
