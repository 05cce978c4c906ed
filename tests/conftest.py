"""Fixtures: a real Postgres database, a real Redis, a real Celery worker, the real Flask app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import environment

_env: environment.TestEnvironment | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point every module at the run's own database before any of them reads its settings."""
    global _env
    if hasattr(config, "workerinput"):
        return
    # The suite runs on the run's own Redis; tests/functional/test_rabbitmq.py brings its own broker.
    for name in ("BROKER_URL", "VAULTCRAFT_BROKER_NAMESPACE"):
        os.environ.pop(name, None)
    _env = environment.prepare()
    os.environ["DATABASE_URL"] = _env.database_url
    os.environ["REDIS_URL"] = _env.redis_url
    os.environ["VAULTCRAFT_BCRYPT_ROUNDS"] = "4"  # hashing cost is not under test; hundreds of signups are
    os.environ["VAULTCRAFT_PENDING_STALE_SECONDS"] = "2"
    # Every test client is 127.0.0.1 and signs in many users; the limits' own test lowers them again.
    os.environ["VAULTCRAFT_LOGIN_LIMIT_PER_ADDRESS"] = "100000 per minute"
    os.environ["VAULTCRAFT_WRITE_LIMIT_PER_TOKEN"] = "100000 per minute"
    os.environ["VAULTCRAFT_SIGNUP_LIMIT_PER_ADDRESS"] = "100000 per minute"
    # Webhooks reach the tests' receivers on loopback, and their windows are seconds, not days. Every
    # process of the run reads the same values (the relay in one worker sets a delivery's give-up time,
    # the webhooks worker makes its attempts).
    os.environ.update(WEBHOOK_TEST_ENVIRONMENT)
    from ops.migrate import upgrade_to_head

    upgrade_to_head(_env.database_url)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _env is not None:
        from models.db import dispose_engine

        dispose_engine()
        environment.tear_down(_env)


WEBHOOK_TEST_ENVIRONMENT = {
    "VAULTCRAFT_WEBHOOK_ALLOW_PRIVATE": "true",
    "VAULTCRAFT_WEBHOOK_TIMEOUT_SECONDS": "1",
    "VAULTCRAFT_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "VAULTCRAFT_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    "VAULTCRAFT_WEBHOOK_GIVE_UP_SECONDS": "6",
    "VAULTCRAFT_WEBHOOK_DISABLE_AFTER_SECONDS": "3",
    "VAULTCRAFT_WEBHOOK_SWEEP_STALE_SECONDS": "1",
}
WORKER_READY_SECONDS_MAX = 60
WORKER_QUEUES = "settlement,maintenance"


def start_worker(
    name: str,
    concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
    *,
    queues: str = WORKER_QUEUES,
    pool: str = "prefork",
    control: Any = None,
) -> subprocess.Popen[bytes]:
    """A real `celery worker` process on the run's broker and database, ready to take tasks. Another
    broker (in `extra_env`) needs its own `control` (a Celery app's) to ask the worker whether it is up."""
    from workers.app import app

    control = control or app.control
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "workers.app",
        "worker",
        "--loglevel",
        "WARNING",
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--queues",
        queues,
        "--hostname",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    process = subprocess.Popen(command, env={**os.environ, **(extra_env or {})})
    deadline = time.monotonic() + WORKER_READY_SECONDS_MAX
    while time.monotonic() < deadline:
        replies = control.ping(timeout=0.5) or []
        if any(name in key for reply in replies for key in reply):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {process.returncode}")
    process.kill()
    raise RuntimeError(f"worker {name} did not become ready")


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def worker() -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker("settler")
    yield process
    stop_worker(process)


@pytest.fixture(scope="session")
def webhook_worker() -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's `webhooks` worker: the webhooks queue, a pool of threads."""
    process = start_worker("webhooks", concurrency=8, queues="webhooks", pool="threads")
    yield process
    stop_worker(process)


@pytest.fixture(scope="session")
def app():
    from web.app import create_app

    flask_app = create_app()
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def api(app, worker):
    """The HTTP API with a live worker behind it."""
    from tests.client import ApiClient

    return ApiClient(app)


class MessageLoss:
    """After `start()`, accepted intents are committed but never published, as if the message were
    lost: they stay PENDING until a test settles them or the sweep finds them."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.active = False

    def start(self) -> MessageLoss:
        self.active = True
        return self


@pytest.fixture
def unpublished(monkeypatch: pytest.MonkeyPatch) -> MessageLoss:
    from web.routes import transactions

    loss = MessageLoss()
    publish = transactions.settle_soon

    def maybe_lose(transaction_ids):
        if not loss.active:
            return publish(transaction_ids)
        loss.ids.extend(str(i) for i in transaction_ids)
        return True

    monkeypatch.setattr(transactions, "settle_soon", maybe_lose)
    return loss


@pytest.fixture(scope="session")
def db():
    """Direct SQL on the run's database, for checks behind the API's back."""
    from tests.database import Database

    return Database()


@pytest.fixture(scope="session")
def fuzz_user(app, worker):
    """An OWNER with a funded wallet, so generated requests reach past authentication."""
    from tests.client import ApiClient

    api = ApiClient(app)
    owner = api.signup("Fuzz")
    api.funded_wallet(owner, 1_000_000)
    return owner
