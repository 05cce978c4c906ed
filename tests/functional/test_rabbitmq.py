"""BROKER_URL=amqp://...: the settlement pipeline and the event relay on a real RabbitMQ.

Runs when a RabbitMQ answers at VAULTCRAFT_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672//;
`.ci/run` exports it when one answers there), and is skipped, saying so, when none does.

The stack (web, a worker) runs on a database and a Redis database of its own, so it relays only its
own events and the run's Redis workers never see its outbox; on RabbitMQ, every queue and exchange
name carries a prefix of its own (VAULTCRAFT_BROKER_NAMESPACE), so parallel runs sharing the broker's
virtual host never take each other's messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
import requests
from amqp.exceptions import PreconditionFailed
from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ops.processes import free_loopback_port
from settings import sqlalchemy_url
from tests import environment
from tests.conftest import start_worker, stop_worker

AMQP_URL = os.environ.get("VAULTCRAFT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
STARTUP_SECONDS_MAX = 30
RECEIVE_SECONDS_MAX = 20
TRANSFERS = 5


def _why_rabbitmq_is_missing() -> str | None:
    try:
        with Connection(AMQP_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


_missing = _why_rabbitmq_is_missing()
pytestmark = pytest.mark.skipif(
    _missing is not None,
    reason=f"no RabbitMQ answers at {maybe_sanitize_url(AMQP_URL)} ({_missing}); "
    "set VAULTCRAFT_TEST_AMQP_URL to a RabbitMQ to run these tests",
)


@dataclass
class RabbitStack:
    base: str
    namespace: str
    database_url: str
    http: requests.Session

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs)

    def exchange(self, name: str) -> Exchange:
        return Exchange(f"{self.namespace}{name}", type="topic", durable=True)


def _wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200")


def _own_database(run_id: str) -> tuple[str, str, str]:
    admin_url = environment._admin_url(os.environ["DATABASE_URL"])
    name = f"vaultcraft_test_rabbit_{run_id}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(os.environ["DATABASE_URL"]).set(database=name).render_as_string(hide_password=False)
    from ops.migrate import upgrade_to_head

    upgrade_to_head(url)
    return admin_url, name, url


def _delete_namespace(namespace: str) -> None:
    """Every queue and exchange the stack and the tests declared under its prefix (the worker's own
    reply and event queues delete themselves)."""
    queues = ("settlement", "maintenance", "events-received", "confirm-refusing", "confirm-accepted")
    exchanges = ("settlement", "maintenance", "vaultcraft.events", "confirm.events", "celery.pidbox", "celeryev")
    with Connection(AMQP_URL) as connection:  # deleting what does not exist is no error on RabbitMQ
        channel = connection.default_channel
        for name in queues:
            channel.queue_delete(f"{namespace}{name}")
        for name in exchanges:
            channel.exchange_delete(f"{namespace}{name}")
        channel.exchange_delete(f"reply.{namespace}celery.pidbox")


@pytest.fixture(scope="module")
def rabbit() -> Iterator[RabbitStack]:
    run_id = uuid.uuid4().hex[:10]
    namespace = f"vaultcraft-test-{run_id}."
    admin_url, database_name, database_url = _own_database(run_id)
    redis_url = environment._claim_redis_database(os.environ["REDIS_URL"], run_id)
    port = free_loopback_port()
    stack_env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": AMQP_URL,
        "VAULTCRAFT_BROKER_NAMESPACE": namespace,
        "WEB_PORT": str(port),
        "WEB_PROCESSES": "1",
        "WEB_ACCESS_LOG": "0",
    }
    probe = Celery("probe", broker=AMQP_URL)
    probe.conf.control_exchange = f"{namespace}celery"
    web = subprocess.Popen([sys.executable, "-m", "web.serve"], env={**os.environ, **stack_env})
    worker = None
    try:
        worker = start_worker(
            f"rabbit-{run_id}",
            extra_env=stack_env,
            queues=f"{namespace}settlement,{namespace}maintenance",
            control=probe.control,
        )
        _wait_http(f"http://127.0.0.1:{port}/health", web)
        yield RabbitStack(f"http://127.0.0.1:{port}", namespace, database_url, requests.Session())
    finally:
        if worker is not None:
            stop_worker(worker)
        web.terminate()
        web.wait(timeout=20)
        probe.close()
        _delete_namespace(namespace)
        redis.Redis.from_url(redis_url).flushdb()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')


def _signup(rabbit: RabbitStack) -> str:
    email = f"rabbit-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "correct horse", "full_name": "R", "organization_name": "Rabbit"}
    answer = rabbit.call("POST", "/api/v1/auth/signup", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["access_token"])


def _receive(queue: Any, wanted: set[str]) -> dict[str, Any]:
    """transaction id → its transaction.completed message, until every wanted one has arrived."""
    received: dict[str, Any] = {}
    deadline = time.monotonic() + RECEIVE_SECONDS_MAX
    while not wanted <= set(received) and time.monotonic() < deadline:
        message = queue.get(no_ack=True)
        if message is None:
            time.sleep(0.05)
        elif message.payload["type"] == "transaction.completed":
            received[message.payload["aggregate"]["id"]] = message
    return received


def test_transfers_settle_and_their_events_arrive_through_rabbitmq(rabbit):
    connection = Connection(AMQP_URL)
    events = Queue(
        f"{rabbit.namespace}events-received", rabbit.exchange("vaultcraft.events"), routing_key="transaction.#"
    )
    queue = events(connection.default_channel)
    queue.declare()  # before the traffic: a queue receives what is published after it is bound
    try:
        token = _signup(rabbit)
        source, destination = (
            rabbit.call("POST", "/api/v1/wallets/", token, json={"type": "PRIMARY", "currency": "INR"}).json()["id"]
            for _ in range(2)
        )
        deposit = rabbit.call("POST", f"/api/v1/wallets/{source}/deposit", token, json={"amount": 1_000})
        assert deposit.status_code == 202, deposit.text
        accepted = [deposit.json()["id"]]
        for _ in range(TRANSFERS):
            transfer = rabbit.call(
                "POST", "/api/v1/transactions/transfer", token,
                json={"source_wallet_id": source, "destination_wallet_id": destination, "amount": 10},
            )  # fmt: skip
            assert transfer.status_code == 202, transfer.text
            accepted.append(transfer.json()["id"])

        for transaction_id in accepted:
            final = rabbit.call("GET", f"/api/v1/transactions/{transaction_id}?wait=20", token).json()
            assert final["status"] == "COMPLETED", final
        assert rabbit.call("GET", f"/api/v1/wallets/{destination}", token).json()["balance"] == 10 * TRANSFERS

        received = _receive(queue, set(accepted))
        assert set(received) == set(accepted)
        from models import OutboxEvent

        engine = create_engine(sqlalchemy_url(rabbit.database_url))
        with Session(engine) as session:
            recorded = {
                row.aggregate_id: row
                for row in session.scalars(
                    select(OutboxEvent).where(
                        OutboxEvent.aggregate_id.in_(accepted), OutboxEvent.event_type == "transaction.completed"
                    )
                )
            }
        engine.dispose()
        for transaction_id, message in received.items():
            assert message.payload["id"] == str(recorded[transaction_id].event_id)
            assert message.properties["message_id"] == message.payload["id"]
            assert recorded[transaction_id].published_at is not None
    finally:
        queue.delete()
        connection.release()


def test_the_task_queues_are_quorum_queues(rabbit):
    """Declaring one as a classic queue is refused: RabbitMQ holds it as a quorum queue."""
    with Connection(AMQP_URL) as connection:
        for name in ("settlement", "maintenance"):
            quorum = Queue(f"{rabbit.namespace}{name}", queue_arguments={"x-queue-type": "quorum"})
            quorum(connection.default_channel).declare()  # the same arguments: accepted
            classic = Queue(f"{rabbit.namespace}{name}", queue_arguments={"x-queue-type": "classic"})
            with pytest.raises(PreconditionFailed):
                classic(connection.default_channel).declare()
            connection.collect()  # the refusal closed the channel


def test_health_and_queue_depth_read_rabbitmq(rabbit):
    health = rabbit.call("GET", "/health")
    assert health.status_code == 200 and health.json()["checks"]["broker"] == "ok", health.text
    metrics = rabbit.call("GET", "/metrics").text
    for name in ("settlement", "maintenance"):
        assert f'vaultcraft_queue_depth{{queue="{rabbit.namespace}{name}"}}' in metrics


def test_the_relay_marks_published_only_what_rabbitmq_confirmed(rabbit, monkeypatch):
    """A queue that refuses every message (full, reject-publish) makes the broker nack the event:
    it stays unpublished and is retried; once the broker takes it, it is marked published."""
    from ledger.integrity.events import record_event
    from models import OutboxEvent
    from tasks import outbox

    exchange = rabbit.exchange("confirm.events")
    monkeypatch.setattr(outbox, "EVENTS_EXCHANGE", exchange)  # the stack's worker relays elsewhere
    engine = create_engine(sqlalchemy_url(rabbit.database_url))
    with Connection(AMQP_URL) as connection:
        exchange(connection.default_channel).declare()
        refusing = Queue(
            f"{rabbit.namespace}confirm-refusing", exchange, routing_key="#", auto_delete=True,
            queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )(connection.default_channel)  # fmt: skip
        refusing.declare()
        _wait_for_an_empty_outbox(engine)
        # Never committed: the stack's own relay cannot see this event, only the calls below do.
        with Session(engine) as session, session.begin():
            event_id = uuid.uuid4()
            record_event(session, "webhook.test", aggregate=("test", str(event_id)), data={"probe": str(event_id)})

            with outbox.events_producer(AMQP_URL) as producer:
                assert outbox.relay_batch(session, producer) == (0, False)
            refused = session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))).one()
            assert refused.attempts == 1 and "MessageNacked" in (refused.last_error or "")

            refusing.delete()
            accepted = Queue(f"{rabbit.namespace}confirm-accepted", exchange, routing_key="#")(
                connection.default_channel
            )
            accepted.declare()
            session.execute(update(OutboxEvent).values(next_attempt_at=None))  # due now, not after its backoff
            with outbox.events_producer(AMQP_URL) as producer:
                assert outbox.relay_batch(session, producer) == (1, False)
            message = accepted.get(no_ack=True)
            assert message is not None and message.payload["data"] == {"probe": str(event_id)}
            session.rollback()
    engine.dispose()


def _wait_for_an_empty_outbox(engine: Any) -> None:
    """The stack's relay has published every committed event (the first test's)."""
    from models import OutboxEvent

    deadline = time.monotonic() + RECEIVE_SECONDS_MAX
    while True:
        with Session(engine) as session:
            if session.scalar(select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None)).limit(1)) is None:
                return
        assert time.monotonic() < deadline, "the stack's relay left events unpublished"
        time.sleep(0.1)
