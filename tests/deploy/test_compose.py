"""deploy/compose.yaml, the scaled layout, checked without Docker: it parses; every PineOps service runs the one
image of the Dockerfile; each one's environment (the Dockerfile's ENV, then the service's, interpolated as
Compose does) passes the project's environment check, and `manage.py appliance_env` under it starts exactly
the programs of its roles; the hub and beat are single, every demo strategy has a worker."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from pineops.envcheck import environment_problems
from tests.e2e.appliance import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
SECRETS = {  # what deploy/.env would hold
    "SECRET_KEY": "compose-test-" + "k" * 50, "POSTGRES_PASSWORD": "compose-test-pw",
    "DATABENTO_API_KEY": "db-" + "ComposeTestKey0000000000000", "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/x",
    "TRADERSPOST_IBS_A_WEBHOOK": "https://webhooks.traderspost.io/trading/webhook/a/b",
    "TRADERSPOST_IBS_B_WEBHOOK": "https://webhooks.traderspost.io/trading/webhook/c/d",
}
PROGRAMS = {"web": "WEB", "hub": "HUB", "workers": "WORKERS", "celery": "CELERY", "beat": "BEAT"}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, environ: dict) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} (an unset or empty required variable stops it)."""
    def one(match):
        value = environ.get(match["name"], "")
        if match["op"] == ":?" and not value:
            raise ValueError(f"required variable {match['name']} is missing a value: {match['arg']}")
        return value or (match["arg"] if match["op"] == ":-" else "")

    return VARIABLE.sub(one, text)


def dockerfile_env() -> dict[str, str]:
    """The image's ENV (the Dockerfile's ENV instructions, with their line continuations)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(part.split("=", 1) for part in shlex.split(line[4:]))
    return found


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def pineops_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == "pineops:latest"}


def container_env(service: dict, environ: dict = SECRETS) -> dict[str, str]:
    values = {k: interpolate(str(v), environ) for k, v in (service.get("environment") or {}).items()}
    return {**dockerfile_env(), **values}


def test_the_layout_is_the_one_image_on_one_postgresql_and_one_redis():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "web", "hub", "worker-a", "worker-b", "celery", "beat"}
    ours = pineops_services()
    assert set(ours) == set(services) - {"postgres", "redis"}
    for name, service in ours.items():
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == \
            ROOT / "Dockerfile", name
        env = container_env(service)
        assert env["DATABASE_URL"] == "postgres://pineops:compose-test-pw@postgres:5432/pineops", name
        assert env["REDIS_URL"] == "redis://redis:6379/0" and env["PINEOPS_START_REDIS"] == "false", name
        assert "hostname" not in service, f"{name}: a fixed hostname would be shared by its replicas' lock tokens"
    roles = {name: container_env(s)["PINEOPS_ROLES"].split(",") for name, s in ours.items()}
    assert [n for n, r in roles.items() if "hub" in r] == ["hub"] and [n for n, r in roles.items() if "beat" in r] == ["beat"]
    strategies = {name: container_env(ours[name])["PINEOPS_WORKER_STRATEGIES"].split(",")
                  for name, r in roles.items() if "workers" in r}
    assert strategies == {"worker-a": ["ibs_a"], "worker-b": ["ibs_b", "ibs_a"]}
    assert ours["web"]["ports"] == ["8000:8000"]


def test_a_missing_secret_stops_compose_naming_it():
    with pytest.raises(ValueError, match="SECRET_KEY"):
        container_env(pineops_services()["web"], {k: v for k, v in SECRETS.items() if k != "SECRET_KEY"})


@pytest.mark.parametrize("name", ["web", "hub", "worker-a", "worker-b", "celery", "beat"])
def test_each_containers_environment_passes_the_check_and_starts_the_programs_of_its_roles(name, tmp_path):
    env = container_env(pineops_services()[name])
    assert environment_problems(env) == []
    # manage.py appliance_env as the entrypoint runs it, with the container's environment (RUNTIME_DIR here).
    run = {"PATH": os.environ["PATH"], **env, "RUNTIME_DIR": str(tmp_path), "PINEOPS_ENV_FILE": "/dev/null",
           "PINEOPS_HOME": str(ROOT), "MODELS_DIR": str(ROOT / "models")}
    result = subprocess.run([sys.executable, "manage.py", "appliance_env"], cwd=ROOT, env=run, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    roles = env["PINEOPS_ROLES"].split(",")
    assert exported["PINEOPS_ROLES"] == ",".join(roles)
    assert {role: exported[f"PINEOPS_START_{flag}"] for role, flag in PROGRAMS.items()} == {
        role: "true" if role in roles else "false" for role in PROGRAMS}
    assert (exported["PINEOPS_REDIS_HOST"], exported["PINEOPS_DEMO_SERVICES"]) == ("redis", "false")
