"""docker compose runs exactly the Procfile's commands, so `make run` and containers behave alike."""

from __future__ import annotations

import shlex

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


def test_the_rabbitmq_profile_runs_the_broker_and_the_app_waits_for_it():
    """`BROKER_URL=amqp://...@rabbitmq... docker compose --profile rabbitmq up`: a RabbitMQ that keeps its
    data across restarts, every app process on BROKER_URL (Redis when unset), waiting for the broker
    only when the profile runs it."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"] and rabbitmq["image"].startswith("rabbitmq:3-management")
    assert rabbitmq["hostname"] == "rabbitmq"  # its data directory is named after the node's host name
    [volume] = [v.split(":")[0] for v in rabbitmq["volumes"] if v.endswith(":/var/lib/rabbitmq")]
    assert volume in compose["volumes"]
    assert "healthcheck" in rabbitmq
    user, password = rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"], rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"]
    assert (
        f"BROKER_URL=amqp://{user}:{password}@rabbitmq:5672/ docker compose --profile rabbitmq up"
        in (PROJECT_ROOT / "README.md").read_text()
    )
    for name in ("web", "worker", "beat", "flower"):
        service = services[name]
        assert service["environment"]["BROKER_URL"] == "${BROKER_URL:-redis://redis:6379/0}", name
        assert service["depends_on"]["rabbitmq"] == {"condition": "service_healthy", "required": False}, name
    for name, service in services.items():  # no service but the broker itself needs the profile
        assert name == "rabbitmq" or "profiles" not in service or "rabbitmq" not in service["profiles"]
