"""How attempts follow one another: the relay enqueues only as many deliveries per endpoint as may be in
flight, and a thread that finished an attempt goes on with its endpoint's oldest due delivery itself
(`claim_next`), within the endpoint's in-flight bound. All in one transaction, rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.identity import signup
from ledger.integrity.events import record_event
from models import EndpointStatus, OutboxEvent, WebhookEndpoint
from models.db import session_factory
from notify import deliveries, signing_secrets
from notify.client import Outcome
from settings import get_settings
from tasks.outbox import _ENVELOPE_SQL

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


def test_the_relay_enqueues_the_in_flight_bound_per_endpoint_and_attempts_go_on_from_there(session):
    settings = get_settings()
    bound = settings.webhook_endpoint_in_flight_max
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
            select(OutboxEvent.id).where(OutboxEvent.event_type == "webhook.test", OutboxEvent.aggregate_type == "test")
        )
    )

    assert deliveries.create_for_events(session, ids, _ENVELOPE_SQL, settings) == 2 * EVENTS
    noted = session.info.pop(deliveries.ENQUEUE_NOTE)
    assert len(noted) == 2 * bound  # not a message per delivery

    attempts = [deliveries.claim(session, delivery_id, settings) for delivery_id in noted]
    assert all(attempts)
    # Every slot of both endpoints is taken: nobody may start another attempt on them.
    assert deliveries.claim_next(session, first.id, settings) is None
    done = next(a for a in attempts if a is not None and a.endpoint_id == first.id)
    deliveries.record_outcome(session, done, Outcome(200, 3, None), settings, note_due=False)
    assert deliveries.ENQUEUE_NOTE not in session.info  # the thread goes on itself
    following = deliveries.claim_next(session, first.id, settings)
    assert following is not None and following.endpoint_id == first.id
    assert following.delivery_id not in {a.delivery_id for a in attempts if a is not None}
    assert deliveries.claim_next(session, first.id, settings) is None  # the bound again
    assert deliveries.claim_next(session, second.id, settings) is None
