"""The delivery state machine. A delivery is one event for one endpoint:

    PENDING ──attempt: 2xx──────────────────────────▶ SUCCEEDED
       │  └─attempt fails: next_attempt_at = now + backoff (exponential, jitter), still PENDING
       └────attempt fails after give_up_at, or the address is blocked, or the endpoint is disabled ──▶ FAILED

An attempt is claimed (a lease on the row, `lease_until`), made outside any transaction, and its
outcome recorded in a second one. At most `webhook_endpoint_in_flight_max` attempts per endpoint
are in flight: a slow or dead endpoint holds that many delivery threads, never all of them. A claim
that finds its endpoint busy leaves the delivery due: the thread whose attempt finishes goes on with
the endpoint's next due one (`claim_next`), and the sweeper (`due_deliveries`) re-enqueues whatever has
been due for too long: a lost message, a worker killed mid-attempt (its lease lapses), a broker outage.

An endpoint whose every attempt has failed for `webhook_disable_after_seconds` is DISABLED, with a
`webhook.disabled` event to the organisation's other endpoints.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.access import Actor, not_found
from ledger.errors import Conflict
from ledger.integrity.events import record_event
from ledger.pagination import Page, paginate
from models import DeliveryStatus, EndpointStatus, WebhookDelivery, WebhookEndpoint
from models.ids import new_id
from models.webhook import WEBHOOK_ERROR_LENGTH_MAX
from notify import endpoints
from notify.client import Outcome
from settings import Settings

# Notes left in session.info for after-commit hooks: deliveries to enqueue, and outcomes to count.
ENQUEUE_NOTE = "vaultcraft.webhook_deliveries_due"
OUTCOMES_NOTE = "vaultcraft.webhook_outcomes"
# Retries due within this many seconds are enqueued with a countdown (held by the broker and worker,
# well within the broker's visibility timeout); later ones are left to the sweeper.
RETRY_NOTE = "vaultcraft.webhook_retries"
RETRY_COUNTDOWN_SECONDS_MAX = 60.0
WEBHOOK_DISABLED = "webhook.disabled"
WEBHOOK_TEST = "webhook.test"
# A lease outlives the attempt's own deadline by this much before the sweeper may hand it out again:
# long enough to record the outcome, short because the lease of an attempt whose worker was killed
# keeps one of its endpoint's few in-flight slots until then (30 s of it per kill, per slot). Recording
# later than this can only cause a duplicate (at least once), never a loss.
LEASE_MARGIN_SECONDS = 5.0
# Backoff jitter: each delay is drawn from [1 - JITTER, 1] of the exponential step.
JITTER = 0.3


@dataclass(frozen=True)
class Attempt:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    event_id: str
    body: str
    secrets: list[str]


# One INSERT ... SELECT per relay batch: a delivery for every ENABLED endpoint of an organisation the
# event concerns whose filters match it ("*", "<aggregate>.*", the exact type). `body` is the relay's
# envelope SQL, over the outbox row's own columns, so the bytes sent are the bytes the broker carries.
# The EXISTS is evaluated once per statement (a one-time filter): with no enabled endpoint anywhere, the
# batch's events are not read again (two blocks per event in a relay that had nothing to deliver).
_CREATE_FROM_EVENTS = """
INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type, event_created_at, body,
                                status, attempt, next_attempt_at, give_up_at, created_at)
SELECT uuid_v7(), w.id, w.organization_id, e.event_id, e.event_type, e.created_at, e.body,
       'PENDING', 0, clock_timestamp(), clock_timestamp() + make_interval(secs => %(give_up_seconds)s),
       clock_timestamp()
  FROM (SELECT event_id, event_type, created_at, organization_ids, {body} AS body
          FROM outbox_events WHERE id = ANY(%(ids)s)
           AND EXISTS (SELECT FROM webhook_endpoints WHERE status = 'ENABLED')) AS e
  JOIN webhook_endpoints AS w
    ON w.organization_id = ANY(e.organization_ids)
   AND w.status = 'ENABLED'
   AND w.event_types && ARRAY['*', split_part(e.event_type, '.', 1) || '.*', e.event_type]::varchar[]
ON CONFLICT ON CONSTRAINT uq_webhook_deliveries_endpoint_event DO NOTHING
RETURNING id, endpoint_id
"""


def create_for_events(session: Session, event_row_ids: list[int], body_sql: str, settings: Settings) -> int:
    """Delivery rows for outbox events (by `outbox_events.id`), in the caller's (the relay's)
    transaction. Returns how many were made.

    Only as many per endpoint as may be in flight at once are noted for enqueueing after commit:
    each attempt goes on with its endpoint's next due delivery (`claim_next`), so a message per
    delivery would only find the endpoint busy (a claim transaction each, for nothing)."""
    if not event_row_ids:
        return 0
    created = (
        session.connection()
        .exec_driver_sql(
            _CREATE_FROM_EVENTS.format(body=body_sql),
            {"ids": event_row_ids, "give_up_seconds": settings.webhook_give_up_seconds},
        )
        .all()
    )
    per_endpoint: dict[uuid.UUID, list[uuid.UUID]] = {}
    for delivery_id, endpoint_id in created:
        noted = per_endpoint.setdefault(endpoint_id, [])
        if len(noted) < settings.webhook_endpoint_in_flight_max:
            noted.append(delivery_id)
    session.info.setdefault(ENQUEUE_NOTE, []).extend(i for ids in per_endpoint.values() for i in ids)
    return len(created)


def claim(session: Session, delivery_id: uuid.UUID, settings: Settings) -> Attempt | None:
    """Lease a due delivery for one attempt, or None: not due, final, gone, held by another attempt,
    or its endpoint already has as many attempts in flight as it may."""
    now = _now(session)
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update={"key_share": True})
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    if (delivery.next_attempt_at and delivery.next_attempt_at > now) or (
        delivery.lease_until and delivery.lease_until > now
    ):
        return None
    return _lease(session, delivery, now, settings)


def claim_next(session: Session, endpoint_id: uuid.UUID, settings: Settings) -> Attempt | None:
    """Lease the endpoint's oldest due delivery, or None: nothing due, or no free slot.

    What a delivery thread does after an attempt, instead of a broker round trip per delivery: it
    keeps the endpoint's slot and goes on with the next due one. SKIP LOCKED: another thread's
    drain of the same endpoint takes the next one, not the same."""
    now = _now(session)
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
        .with_for_update(key_share=True, skip_locked=True)
    ).one_or_none()
    if delivery is None:
        return None
    return _lease(session, delivery, now, settings)


def _lease(session: Session, delivery: WebhookDelivery, now: datetime, settings: Settings) -> Attempt | None:
    # The endpoint row lock orders every claim of one endpoint: the in-flight count cannot race.
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update={"key_share": True})
    if endpoint is None:
        return None
    if endpoint.status != EndpointStatus.ENABLED:
        _finish(delivery, DeliveryStatus.FAILED, now, error="ENDPOINT_DISABLED")
        return None
    if _in_flight(session, endpoint.id, now) >= settings.webhook_endpoint_in_flight_max:
        return None
    delivery.lease_until = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    return Attempt(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        event_id=str(delivery.event_id),
        body=delivery.body,
        secrets=endpoints.current_secrets(endpoint, secrets_key=settings.webhook_secrets_key, now=now),
    )


def _in_flight(session: Session, endpoint_id: uuid.UUID, now: datetime) -> int:
    query = select(func.count()).where(
        WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.lease_until.is_not(None),
        WebhookDelivery.lease_until > now,
    )
    return session.scalar(query) or 0


def record_outcome(
    session: Session, attempt: Attempt, outcome: Outcome, settings: Settings, *, note_due: bool = True
) -> None:
    """The attempt's outcome on its delivery (and endpoint). With `note_due`, notes the endpoint's
    next due deliveries (this attempt's slot is free again) for enqueueing after commit; without,
    the caller goes on with them itself (`claim_next`)."""
    now = _now(session)
    delivery = session.get(WebhookDelivery, attempt.delivery_id, with_for_update={"key_share": True})
    endpoint = session.get(WebhookEndpoint, attempt.endpoint_id, with_for_update={"key_share": True})
    if delivery is None or endpoint is None:
        return  # deleted while the attempt was in flight
    delivery.attempt += 1
    delivery.response_status = outcome.response_status
    delivery.duration_ms = outcome.duration_ms
    delivery.error = outcome.error[:WEBHOOK_ERROR_LENGTH_MAX] if outcome.error else None
    delivery.last_attempt_at, delivery.lease_until = now, None
    if outcome.succeeded:
        _finish(delivery, DeliveryStatus.SUCCEEDED, now, error=None)
        endpoint.failing_since = None
        _note_outcome(session, "succeeded", (now - delivery.event_created_at).total_seconds())
    else:
        _failed_attempt(session, delivery, endpoint, outcome, now, settings)
    if note_due:
        _note_due(session, endpoint.id, now, settings)


def _failed_attempt(
    session: Session,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    outcome: Outcome,
    now: datetime,
    settings: Settings,
) -> None:
    if outcome.blocked or now >= delivery.give_up_at or delivery.status != DeliveryStatus.PENDING:
        _finish(delivery, DeliveryStatus.FAILED, now, error=delivery.error)
        _note_outcome(session, "failed", None)
    else:
        delivery.next_attempt_at = min(now + backoff(delivery.attempt, settings), delivery.give_up_at)
        _note_outcome(session, "retrying", None)
        countdown = (delivery.next_attempt_at - now).total_seconds()
        if countdown <= RETRY_COUNTDOWN_SECONDS_MAX:
            session.info.setdefault(RETRY_NOTE, []).append((delivery.id, countdown))
    if endpoint.failing_since is None:
        endpoint.failing_since = now - timedelta(milliseconds=outcome.duration_ms)
    failing = (now - endpoint.failing_since).total_seconds()
    if endpoint.status == EndpointStatus.ENABLED and failing >= settings.webhook_disable_after_seconds:
        disable_failing(session, endpoint, now)


def backoff(attempts_made: int, settings: Settings) -> timedelta:
    """Exponential from the base (base, 2 base, 4 base, ...), capped, each drawn with jitter so
    deliveries that failed together do not all come back together."""
    step = min(
        settings.webhook_retry_base_seconds * 2 ** min(attempts_made - 1, 30), settings.webhook_retry_max_seconds
    )
    return timedelta(seconds=step * random.uniform(1 - JITTER, 1))


def disable_failing(session: Session, endpoint: WebhookEndpoint, now: datetime) -> None:
    endpoints.disable(session, endpoint, now)
    record_event(
        session,
        WEBHOOK_DISABLED,
        aggregate=("webhook_endpoint", endpoint.id),
        data={
            "id": endpoint.id,
            "url": endpoint.url,
            "reason": "FAILING",
            "failing_since": endpoint.failing_since,
            "disabled_at": now,
        },
        organization_ids=[endpoint.organization_id],
    )


def _finish(delivery: WebhookDelivery, status: DeliveryStatus, now: datetime, *, error: str | None) -> None:
    delivery.status, delivery.error, delivery.completed_at = status, error, now
    delivery.next_attempt_at, delivery.lease_until = None, None


def _note_outcome(session: Session, outcome: str, latency_seconds: float | None) -> None:
    session.info.setdefault(OUTCOMES_NOTE, []).append((outcome, latency_seconds))


def _note_due(session: Session, endpoint_id: uuid.UUID, now: datetime, settings: Settings) -> None:
    session.flush()
    free = settings.webhook_endpoint_in_flight_max - _in_flight(session, endpoint_id, now)
    if free <= 0:
        return
    due = session.scalars(
        _due_query(now)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.next_attempt_at <= now)
        .limit(free)
    ).all()
    session.info.setdefault(ENQUEUE_NOTE, []).extend(due)


def _due_query(now: datetime) -> Any:
    return (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
    )


def due_deliveries(session: Session, settings: Settings) -> list[uuid.UUID]:
    """For the sweeper: deliveries due for longer than `webhook_sweep_stale_seconds` and not held by
    a live attempt, oldest due first, at most a batch, and at most the in-flight bound per endpoint:
    each attempt goes on with its endpoint's next due delivery, so more messages for one endpoint
    would only find it busy (a claim each, all waiting on the endpoint's row lock)."""
    now = _now(session)
    stale = now - timedelta(seconds=settings.webhook_sweep_stale_seconds)
    ranked = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.next_attempt_at,
            func.row_number()
            .over(partition_by=WebhookDelivery.endpoint_id, order_by=WebhookDelivery.next_attempt_at)
            .label("rank"),
        )
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until <= now),
            WebhookDelivery.next_attempt_at <= stale,
        )
        .subquery()
    )
    query = (
        select(ranked.c.id)
        .where(ranked.c.rank <= settings.webhook_endpoint_in_flight_max)
        .order_by(ranked.c.next_attempt_at)
        .limit(settings.webhook_sweep_batch_size_max)
    )
    return list(session.scalars(query))


def list_deliveries(
    session: Session, actor: Actor, endpoint_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[WebhookDelivery]:
    endpoints.get_endpoint(session, actor, endpoint_id)
    return paginate(
        session,
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id),
        keys=(WebhookDelivery.created_at, WebhookDelivery.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def retry_delivery(session: Session, actor: Actor, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Due now. A delivery that had ended gets one more attempt (no new retry schedule); one still
    retrying keeps its schedule from there."""
    endpoint = endpoints.get_endpoint(session, actor, endpoint_id)
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
        .with_for_update(key_share=True)
    ).one_or_none()
    if delivery is None:
        raise not_found(
            session,
            WebhookDelivery,
            delivery_id,
            "webhook_delivery",
            "webhook delivery not found",
            "WEBHOOK_DELIVERY_NOT_FOUND",
        )
    _require_enabled(endpoint)
    now = _now(session)
    if delivery.status != DeliveryStatus.PENDING:
        delivery.status, delivery.completed_at, delivery.give_up_at = DeliveryStatus.PENDING, None, now
    delivery.next_attempt_at = now
    session.info.setdefault(ENQUEUE_NOTE, []).append(delivery.id)
    return delivery


def send_test(session: Session, actor: Actor, endpoint_id: uuid.UUID, settings: Settings) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint alone, due now (a ping, not a domain event: it goes
    through no outbox and reaches no other endpoint or broker consumer)."""
    endpoint = endpoints.get_endpoint(session, actor, endpoint_id)
    _require_enabled(endpoint)
    now = _now(session)
    event_id = new_id()
    envelope = {
        "id": str(event_id),
        "type": WEBHOOK_TEST,
        "created_at": now.isoformat(),
        "aggregate": {"type": "webhook_endpoint", "id": str(endpoint.id)},
        "wallet_ids": [],
        "organization_ids": [str(endpoint.organization_id)],
        "data": {"endpoint_id": str(endpoint.id), "message": "a test event from VaultCraft"},
    }
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        organization_id=endpoint.organization_id,
        event_id=event_id,
        event_type=WEBHOOK_TEST,
        event_created_at=now,
        body=json.dumps(envelope),
        status=DeliveryStatus.PENDING,
        attempt=0,
        next_attempt_at=now,
        give_up_at=now + timedelta(seconds=settings.webhook_give_up_seconds),
    )
    session.add(delivery)
    session.flush()
    session.info.setdefault(ENQUEUE_NOTE, []).append(delivery.id)
    return delivery


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if endpoint.status != EndpointStatus.ENABLED:
        raise Conflict("the webhook endpoint is disabled", code="WEBHOOK_DISABLED")


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "attempt": delivery.attempt,
        "status": delivery.status,
        "response_status": delivery.response_status,
        "duration_ms": delivery.duration_ms,
        "error": delivery.error,
        "created_at": delivery.created_at,
        "last_attempt_at": delivery.last_attempt_at,
        "next_attempt_at": delivery.next_attempt_at,
        "completed_at": delivery.completed_at,
    }


def _now(session: Session) -> datetime:
    return session.execute(select(func.clock_timestamp())).scalar_one()
