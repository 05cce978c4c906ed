"""docker compose runs exactly the Procfile's commands, so `make run` and containers behave alike."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any

import pytest
import yaml

from settings import PROJECT_ROOT


def _procfile() -> dict[str, str]:
    lines = (PROJECT_ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def _compose_command(service: dict) -> str:
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        return str(command[2]).replace("$$", "$")
    return shlex.join(command)


def test_every_procfile_process_runs_the_same_command_in_compose():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    procfile = _procfile()
    assert set(procfile) == {"web", "worker", "webhooks", "beat", "flower"}
    for name, command in procfile.items():
        assert _compose_command(compose[name]) == command, name


def test_compose_has_the_backing_services_and_a_one_shot_migration():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "migrate"} <= set(compose)
    assert compose["migrate"]["command"] == ["vaultcraft", "migrate"]
    for name in ("web", "worker", "webhooks", "beat", "flower"):
        assert compose[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_web_and_worker_share_one_metrics_directory():
    """/metrics (web) sums every process's samples, the workers' too: one volume at the same path."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    mounts = set()
    for name in ("web", "worker", "webhooks"):
        service = compose["services"][name]
        path = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        [volume] = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == path]
        mounts.add((volume, path))
    [(volume, _)] = mounts
    assert volume in compose["volumes"]


def test_compose_flower_asks_for_a_password_from_the_environment():
    """The image listens on 0.0.0.0 and compose publishes Flower's port: it must ask for a password,
    and compose refuses to start without one rather than fall back to none."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    flower = compose["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    # The rest of the shared environment is kept (a plain `environment:` would replace it).
    assert flower["environment"]["DATABASE_URL"] == compose["web"]["environment"]["DATABASE_URL"]
    assert "ops.flower" in _compose_command(flower)


APP_PROCESSES = ("web", "worker", "webhooks", "beat", "flower")
# The profiles each set of app services is on: the broker's own, and the one that adds monitoring to it.
REDIS_SET = {"redis", "monitoring"}
RABBITMQ_SET = {"rabbitmq", "rabbitmq-monitoring"}
AMQP_URL = "amqp://vaultcraft:vaultcraft@rabbitmq:5672/"
REDIS_BROKER_URL = "redis://redis:6379/0"


def test_the_rabbitmq_profile_runs_the_broker_and_a_copy_of_every_app_service_on_it():
    """`docker compose --profile rabbitmq up` alone: a RabbitMQ that keeps its data across restarts,
    and every app process again as `<name>-rabbitmq` with its broker there, after the broker is up.
    `docker compose up` runs the Redis set: the committed .env enables only the `redis` profile, and a
    --profile on the command line replaces that list."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    rabbitmq = services["rabbitmq"]
    assert set(rabbitmq["profiles"]) == RABBITMQ_SET and rabbitmq["image"].startswith("rabbitmq:3-management")
    assert rabbitmq["hostname"] == "rabbitmq"  # its data directory is named after the node's host name
    [volume] = [v.split(":")[0] for v in rabbitmq["volumes"] if v.endswith(":/var/lib/rabbitmq")]
    assert volume in compose["volumes"]
    assert "healthcheck" in rabbitmq
    user, password = rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"], rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"]
    assert f"amqp://{user}:{password}@rabbitmq:5672/" == AMQP_URL
    for name in APP_PROCESSES:
        on_redis, on_rabbitmq = services[name], services[f"{name}-rabbitmq"]
        assert set(on_redis["profiles"]) == REDIS_SET and set(on_rabbitmq["profiles"]) == RABBITMQ_SET, name
        assert on_redis["environment"]["BROKER_URL"] == REDIS_BROKER_URL, name
        assert on_rabbitmq["environment"]["BROKER_URL"] == AMQP_URL, name
        assert on_rabbitmq["command"] == on_redis["command"], name
        # Everything else the same (the image, volumes, the rest of the environment ...).
        same = {key for key in on_redis if key not in ("profiles", "environment", "depends_on", "networks")}
        assert {key: on_rabbitmq.get(key) for key in same} == {key: on_redis[key] for key in same}, name
        assert {k: v for k, v in on_rabbitmq["environment"].items() if k != "BROKER_URL"} == {
            k: v for k, v in on_redis["environment"].items() if k != "BROKER_URL"
        }, name
        assert on_rabbitmq["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}, name
        assert "rabbitmq" not in on_redis["depends_on"], name
    # Only the backing services and the one-shot migration belong to both sets.
    assert {name for name, service in services.items() if "profiles" not in service} == {"postgres", "redis", "migrate"}
    dotenv = (PROJECT_ROOT / ".env").read_text().splitlines()
    assert "COMPOSE_PROFILES=redis" in dotenv
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "docker compose --profile rabbitmq up" in readme
    assert f"BROKER_URL={AMQP_URL} docker compose" not in readme  # the profile alone does it now


def _compose_config(*profiles: str) -> dict[str, Any]:
    """`docker compose [--profile P ...] config` as the CLI resolves it (the .env file included)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COMPOSE_PROFILES", "BROKER_URL")}
    env["FLOWER_BASIC_AUTH"] = "admin:not-a-secret"
    options = [part for profile in profiles for part in ("--profile", profile)]
    finished = subprocess.run(
        ["docker", "compose", *options, "config", "--format", "json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    return dict(json.loads(finished.stdout)["services"])


def _compose_cli() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _compose_cli(), reason="the docker compose CLI is not installed here")
@pytest.mark.parametrize(
    ("profiles", "broker"), [((), "redis://"), (("rabbitmq",), "amqp://")], ids=["plain", "rabbitmq"]
)
def test_the_compose_cli_runs_every_app_service_on_the_profiles_broker(profiles: tuple[str, ...], broker: str) -> None:
    services = _compose_config(*profiles)
    app = {name: s for name, s in services.items() if s.get("image") == "vaultcraft:local" and name != "migrate"}
    assert len(app) == len(APP_PROCESSES)
    assert {name: s["environment"]["BROKER_URL"][: len(broker)] for name, s in app.items()} == dict.fromkeys(
        app, broker
    )
    assert ("rabbitmq" in services) == bool(profiles)


def _started(services: dict[str, Any], profiles: set[str]) -> set[str]:
    """What `docker compose --profile … up` starts: services on no profile, and those on one given."""
    return {
        name for name, service in services.items() if not service.get("profiles") or profiles & set(service["profiles"])
    }


@pytest.mark.parametrize(
    ("profiles", "app_set", "monitored"),
    [
        ({"redis"}, "", False),  # plain `up`: the committed .env's list
        ({"rabbitmq"}, "-rabbitmq", False),
        ({"monitoring"}, "", True),
        ({"rabbitmq-monitoring"}, "-rabbitmq", True),
    ],
)
def test_each_profile_starts_one_app_set_and_monitoring_only_when_asked(
    profiles: set[str], app_set: str, monitored: bool
) -> None:
    """`--profile monitoring` alone starts the app on Redis with Prometheus and Grafana (a --profile
    replaces the .env list, so the app set must be on it too); never both app sets at once."""
    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    started = _started(services, profiles)
    other_set = "-rabbitmq" if app_set == "" else ""
    assert {f"{name}{app_set}" for name in APP_PROCESSES} <= started
    assert not {f"{name}{other_set}" for name in APP_PROCESSES} & started
    assert ({"prometheus", "grafana"} <= started) is monitored
    assert bool({"prometheus", "grafana"} & started) is monitored
    # Prometheus scrapes `web:8000`: the RabbitMQ set's web answers to that name too.
    if app_set:
        assert "web" in services["web-rabbitmq"]["networks"]["default"]["aliases"]
