"""How attempts follow one another: the relay enqueues one delivery per endpoint, a claim leases a
batch of the endpoint's due deliveries (one drain per endpoint at a time), one statement records a
batch's outcomes, each by its own rule, and the same transaction claims the next batch. The database
parts run in one transaction, rolled back; the sending part against a threaded server on loopback."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger.identity import signup
from ledger.integrity.events import record_event
from models import DeliveryStatus, EndpointStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
from models.db import session_factory
from notify import deliveries, signing_secrets
from notify.client import Outcome, WebhookClient
from settings import Settings, get_settings
from tasks.outbox import _ENVELOPE_SQL
from tasks.webhooks import send_batch

EVENTS = 6


@pytest.fixture
def session(db) -> Iterator[Session]:
    with session_factory()() as session:
        try:
            yield session
        finally:
            session.rollback()


def _endpoint(session: Session, organization_id: uuid.UUID) -> WebhookEndpoint:
    keys = get_settings().webhook_secrets_key
    endpoint = WebhookEndpoint(
        organization_id=organization_id,
        url="http://127.0.0.1:9/hook",
        event_types=["*"],
        status=EndpointStatus.ENABLED,
        secret_encrypted=signing_secrets.encrypt(signing_secrets.new_secret(), keys),
    )
    session.add(endpoint)
    return endpoint


def _two_endpoints_with_deliveries(
    session: Session, settings: Settings | None = None
) -> tuple[WebhookEndpoint, WebhookEndpoint, list[uuid.UUID]]:
    _, organization = signup(
        session, email=f"drain-{uuid.uuid4().hex[:8]}@example.com", password="correct horse battery",
        full_name="Drain", organization_name="Drain",
    )  # fmt: skip
    first, second = _endpoint(session, organization.id), _endpoint(session, organization.id)
    for n in range(EVENTS):
        record_event(session, "webhook.test", aggregate=("test", n), data={"n": n}, organization_ids=[organization.id])
    session.flush()
    ids = list(
        session.scalars(
            select(OutboxEvent.id).where(
                OutboxEvent.event_type == "webhook.test",
                OutboxEvent.aggregate_type == "test",
                OutboxEvent.organization_ids.contains([organization.id]),
            )
        )
    )
    assert deliveries.create_for_events(session, ids, _ENVELOPE_SQL, settings or get_settings()) == 2 * EVENTS
    noted = session.info.pop(deliveries.ENQUEUE_NOTE)
    return first, second, noted


def _row(session: Session, delivery_id: uuid.UUID) -> WebhookDelivery:
    session.expire_all()
    row = session.get(WebhookDelivery, delivery_id)
    assert row is not None
    return row


def test_one_message_per_endpoint_and_one_drain_per_endpoint_at_a_time(session):
    settings = get_settings()
    first, second, noted = _two_endpoints_with_deliveries(session)
    assert len(noted) == 2  # one per endpoint, not a message per delivery

    batches = [deliveries.claim(session, delivery_id, settings) for delivery_id in noted]
    assert all(batches)
    assert {b.endpoint_id for b in batches if b} == {first.id, second.id}
    assert all(len(b.attempts) == EVENTS for b in batches if b)  # the whole due backlog in one claim
    # A drain is at work on each endpoint: no second one starts, whatever the message names.
    assert deliveries.claim_endpoint(session, first.id, settings) is None
    assert deliveries.claim(session, noted[0], settings) is None


def test_a_batch_with_mixed_outcomes_records_each_by_its_own_rule(session):
    settings = dataclasses.replace(
        get_settings(), webhook_retry_base_seconds=30, webhook_retry_max_seconds=60, webhook_give_up_seconds=3600
    )
    first, _, _ = _two_endpoints_with_deliveries(session, settings)
    batch = deliveries.claim_endpoint(session, first.id, settings)
    assert batch is not None
    # The fourth was due to give up already: its failure is final.
    past = datetime.now(UTC) - timedelta(seconds=1)
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == batch.attempts[3].delivery_id).values(give_up_at=past)
    )
    attempts = list(batch.attempts)
    attempts[3] = dataclasses.replace(attempts[3], give_up_at=past)
    batch = dataclasses.replace(batch, attempts=attempts)
    ok, refused, blocked, late, unsent, _ = batch.attempts
    sent = [
        deliveries.Sent(refused, Outcome(500, 4, "HTTP 500"), seconds_ago=0.3),
        deliveries.Sent(ok, Outcome(200, 3, None), seconds_ago=0.2),
        deliveries.Sent(blocked, Outcome(None, 1, "BLOCKED_ADDRESS: no", blocked=True), seconds_ago=0.1),
        deliveries.Sent(late, Outcome(None, 2, "CONNECTION_FAILED: refused"), seconds_ago=0.0),
    ]
    following = deliveries.record(session, batch, sent, settings)

    done = _row(session, ok.delivery_id)
    assert (done.status, done.attempt, done.response_status, done.error) == (DeliveryStatus.SUCCEEDED, 1, 200, None)
    assert done.completed_at is not None and done.lease_until is None and done.next_attempt_at is None
    retrying = _row(session, refused.delivery_id)
    assert (retrying.status, retrying.attempt, retrying.response_status) == (DeliveryStatus.PENDING, 1, 500)
    assert retrying.error == "HTTP 500" and retrying.lease_until is None and retrying.completed_at is None
    base = settings.webhook_retry_base_seconds
    assert retrying.last_attempt_at is not None and retrying.next_attempt_at is not None
    delay = (retrying.next_attempt_at - retrying.last_attempt_at).total_seconds()
    assert base * (1 - deliveries.JITTER) - 0.01 <= delay <= base + 0.01
    refused_for_good = _row(session, blocked.delivery_id)
    assert refused_for_good.status == DeliveryStatus.FAILED
    assert (refused_for_good.error or "").startswith("BLOCKED_ADDRESS")
    gave_up = _row(session, late.delivery_id)
    assert (gave_up.status, gave_up.attempt) == (DeliveryStatus.FAILED, 1)
    assert (gave_up.error or "").startswith("CONNECTION_FAILED")
    # Never sent: no attempt counted, still due, its lease released (the next batch took it again).
    untouched = _row(session, unsent.delivery_id)
    assert (untouched.status, untouched.attempt, untouched.response_status) == (DeliveryStatus.PENDING, 0, None)
    assert following is not None and untouched.lease_until == following.lease_until != batch.lease_until
    # The last attempt to finish failed: the endpoint is failing since that one went out.
    session.refresh(first)
    assert first.failing_since is not None and first.status == EndpointStatus.ENABLED
    # Attempts finished in order, a retry scheduled soon enough gets a message, the next batch is
    # claimed in the same transaction: the unsent ones, not the one waiting for its retry.
    assert [d for d, _ in session.info.pop(deliveries.RETRY_NOTE)] == [refused.delivery_id]
    assert {a.delivery_id for a in following.attempts} == {unsent.delivery_id, batch.attempts[-1].delivery_id}
    outcomes = [o for o, _ in session.info.pop(deliveries.OUTCOMES_NOTE)]
    assert sorted(outcomes) == ["failed", "failed", "retrying", "succeeded"]


def test_a_success_finishing_last_clears_the_failing_mark(session):
    settings = get_settings()
    first, _, _ = _two_endpoints_with_deliveries(session)
    batch = deliveries.claim_endpoint(session, first.id, settings)
    assert batch is not None
    a, b = batch.attempts[:2]
    sent = [
        deliveries.Sent(a, Outcome(200, 3, None), seconds_ago=0.0),
        deliveries.Sent(b, Outcome(503, 3, "HTTP 503"), seconds_ago=0.5),
    ]
    assert deliveries.record(session, batch, sent, settings, claim_next=False) is None
    session.refresh(first)
    assert first.failing_since is None
    # The drain stops here: one of the endpoint's due deliveries is noted for a message.
    [noted] = session.info.pop(deliveries.ENQUEUE_NOTE)
    due = _row(session, noted)
    assert due.endpoint_id == first.id and due.status == DeliveryStatus.PENDING and due.lease_until is None


class Recorder:
    """Answers after `delay` seconds (or never, before the client's timeout, with `hang`), counting
    requests in flight at once."""

    def __init__(self, delay: float, *, hang: bool = False) -> None:
        self.delay, self.hang = delay, hang
        self.in_flight = self.most_in_flight = self.received = 0
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                with recorder.lock:
                    recorder.in_flight += 1
                    recorder.received += 1
                    recorder.most_in_flight = max(recorder.most_in_flight, recorder.in_flight)
                time.sleep(recorder.delay)
                with recorder.lock:
                    recorder.in_flight -= 1
                if recorder.hang:
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


def _batch(url: str, count: int) -> deliveries.Batch:
    now = datetime.now(UTC)
    return deliveries.Batch(
        endpoint_id=uuid.uuid4(),
        url=url,
        secrets=[signing_secrets.new_secret()],
        lease_until=now + timedelta(seconds=30),
        attempts=[
            deliveries.Attempt(uuid.uuid4(), str(uuid.uuid4()), "{}", 0, now + timedelta(days=1), now)
            for _ in range(count)
        ],
    )


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_a_batch_is_sent_with_at_most_the_endpoint_bound_in_flight(bound):
    from concurrent.futures import ThreadPoolExecutor

    recorder = Recorder(0.05)
    settings = dataclasses.replace(get_settings(), webhook_endpoint_in_flight_max=bound)
    client = WebhookClient(allow_private=True, timeout_seconds=5, response_bytes_max=1024)
    batch = _batch(recorder.url, 4 * bound)
    with ThreadPoolExecutor(max_workers=8) as helpers:  # more helpers than the bound: it is not the pool's size
        sent = send_batch(batch, client, settings, helpers)
    client.close()
    recorder.server.shutdown()
    assert [s.attempt for s in sent] == batch.attempts and all(s.outcome.succeeded for s in sent)
    assert recorder.most_in_flight == bound


def test_a_batch_stops_starting_attempts_once_one_got_no_answer():
    from concurrent.futures import ThreadPoolExecutor

    recorder = Recorder(0.6, hang=True)
    settings = dataclasses.replace(get_settings(), webhook_endpoint_in_flight_max=2)
    client = WebhookClient(allow_private=True, timeout_seconds=0.3, response_bytes_max=1024)
    batch = _batch(recorder.url, 10)
    with ThreadPoolExecutor(max_workers=1) as helpers:
        sent = send_batch(batch, client, settings, helpers)
    client.close()
    recorder.server.shutdown()
    # The two in flight timed out; the other eight stay for a later batch (due, unattempted).
    assert len(sent) == 2 and all(s.outcome.error and s.outcome.error.startswith("TIMEOUT") for s in sent)
    assert recorder.received == 2
