"""The delivery state machine. A delivery is one event for one endpoint:

    PENDING ──attempt: 2xx──────────────────────────▶ SUCCEEDED
       │  └─attempt fails: next_attempt_at = now + backoff (exponential, jitter), still PENDING
       └────attempt fails after give_up_at, or the address is blocked, or the endpoint is disabled ──▶ FAILED

Deliveries are attempted in batches, one drain per endpoint at a time: `claim` leases up to
`BATCH_MAX` of an endpoint's due deliveries in one statement (`lease_until`, the same instant on
every row of the batch), unless a live lease shows another drain at work on that endpoint. The batch
is sent outside any transaction, at most `webhook_endpoint_in_flight_max` requests at once (so a slow
or dead endpoint holds that many connections and one delivery thread, never all of them), and
`record` writes every outcome in one statement, then the same transaction claims the endpoint's next
batch (`claim_endpoint`). The endpoint row, locked by every claim and record, orders them: a claim
that finds the endpoint busy may leave its deliveries to the drain at work, whose next claim comes
after it and sees them. The sweeper (`due_deliveries`) re-enqueues whatever has been due for too long:
a lost message, a worker killed mid-batch (its lease lapses), a broker outage.

An endpoint whose every attempt has failed for `webhook_disable_after_seconds` is DISABLED, with a
`webhook.disabled` event to the organisation's other endpoints.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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
# Deliveries one claim leases at most (one statement to claim them, one to record their outcomes).
BATCH_MAX = 64
# A batch's attempts start within this many seconds of its claim; the rest go back unattempted (still
# due) when the batch is recorded. Together with the attempt's own deadline it bounds the lease.
SEND_WINDOW_SECONDS = 2.0
# A lease outlives the last attempt's deadline by this much before the sweeper may hand it out again:
# long enough to record the outcomes, short because the lease of a batch whose worker was killed
# keeps its endpoint from another drain until then. Recording later than this can only cause a
# duplicate (at least once), never a loss.
LEASE_MARGIN_SECONDS = 5.0
# Backoff jitter: each delay is drawn from [1 - JITTER, 1] of the exponential step.
JITTER = 0.3


@dataclass(frozen=True)
class Attempt:
    delivery_id: uuid.UUID
    event_id: str
    body: str
    attempts_made: int  # before this one
    give_up_at: datetime
    event_created_at: datetime


@dataclass(frozen=True)
class Batch:
    """Due deliveries of one endpoint, leased until `lease_until` (the drain's token: a release of
    what it did not send touches only rows still carrying it)."""

    endpoint_id: uuid.UUID
    url: str
    secrets: list[str]
    lease_until: datetime
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Sent:
    """One attempt's outcome, and how many seconds before the record it finished."""

    attempt: Attempt
    outcome: Outcome
    seconds_ago: float = 0.0


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

    One delivery per endpoint is noted for enqueueing after commit: its attempt drains the
    endpoint's due deliveries a batch at a time, so a message per delivery would only find the
    endpoint busy (a claim transaction each, for nothing)."""
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
    per_endpoint: dict[uuid.UUID, uuid.UUID] = {}
    for delivery_id, endpoint_id in created:
        per_endpoint.setdefault(endpoint_id, delivery_id)
    session.info.setdefault(ENQUEUE_NOTE, []).extend(per_endpoint.values())
    return len(created)


# The endpoint's oldest due deliveries not held by a live lease, leased in one statement. SKIP LOCKED:
# a row another transaction is recording is left for the next claim.
_CLAIM = """
UPDATE webhook_deliveries AS d SET lease_until = %(lease_until)s
  FROM (SELECT id FROM webhook_deliveries
         WHERE endpoint_id = %(endpoint_id)s AND status = 'PENDING' AND next_attempt_at <= %(now)s
           AND (lease_until IS NULL OR lease_until <= %(now)s)
         ORDER BY next_attempt_at
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED) AS due
 WHERE d.id = due.id
RETURNING d.id, d.event_id, d.body, d.attempt, d.give_up_at, d.event_created_at, d.next_attempt_at
"""

# A drain is at work on the endpoint while any of its deliveries carries a live lease.
_BUSY = """
SELECT EXISTS (SELECT FROM webhook_deliveries
                WHERE endpoint_id = %(endpoint_id)s AND lease_until IS NOT NULL AND lease_until > %(now)s)
"""


def claim(session: Session, delivery_id: uuid.UUID, settings: Settings) -> Batch | None:
    """A batch of the delivery's endpoint's due deliveries (see `claim_endpoint`): a message names a
    delivery, but it only says "this endpoint has work"."""
    endpoint_id = session.scalar(select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id))
    if endpoint_id is None:
        return None
    return claim_endpoint(session, endpoint_id, settings)


def claim_endpoint(session: Session, endpoint_id: uuid.UUID, settings: Settings) -> Batch | None:
    """Lease up to `BATCH_MAX` of the endpoint's due deliveries, oldest due first, or None: nothing
    due, the endpoint gone or disabled (its waiting deliveries then end FAILED), or another drain at
    work on it (it claims again after its batch, behind this transaction's endpoint lock)."""
    locked = _lock_endpoint(session, endpoint_id)
    if locked is None:
        return None
    endpoint, now = locked
    return _claim_locked(session, endpoint, now, settings)


def _lock_endpoint(session: Session, endpoint_id: uuid.UUID) -> tuple[WebhookEndpoint, datetime] | None:
    """The endpoint row, FOR NO KEY UPDATE (every claim and record of one endpoint, one at a time; the
    relay's inserts only take KEY SHARE, so they pass), and the database's clock, in one statement."""
    row = session.execute(
        select(WebhookEndpoint, func.clock_timestamp())
        .where(WebhookEndpoint.id == endpoint_id)
        .with_for_update(key_share=True, of=WebhookEndpoint)
        .execution_options(populate_existing=True)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def _claim_locked(session: Session, endpoint: WebhookEndpoint, now: datetime, settings: Settings) -> Batch | None:
    if endpoint.status != EndpointStatus.ENABLED:
        endpoints.disable_waiting(session, endpoint, now)
        return None
    connection = session.connection()
    if connection.exec_driver_sql(_BUSY, {"endpoint_id": endpoint.id, "now": now}).scalar():
        return None
    window = SEND_WINDOW_SECONDS + settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
    lease_until = now + timedelta(seconds=window)
    rows = sorted(
        connection.exec_driver_sql(
            _CLAIM, {"endpoint_id": endpoint.id, "now": now, "lease_until": lease_until, "limit": BATCH_MAX}
        ).all(),
        key=lambda r: (r.next_attempt_at, r.id),
    )
    if not rows:
        return None
    return Batch(
        endpoint_id=endpoint.id,
        url=endpoint.url,
        secrets=endpoints.current_secrets(endpoint, secrets_key=settings.webhook_secrets_key, now=now),
        lease_until=lease_until,
        attempts=[
            Attempt(
                delivery_id=r.id,
                event_id=str(r.event_id),
                body=r.body,
                attempts_made=r.attempt,
                give_up_at=r.give_up_at,
                event_created_at=r.event_created_at,
            )
            for r in rows
        ],
    )


# Every outcome of a batch in one statement. A row no longer PENDING (another attempt, after this
# batch's lease lapsed, ended it) keeps its end. Deliveries the batch did not send (`sent` false) only
# lose the lease, and only if it is still this batch's.
_RECORD = """
UPDATE webhook_deliveries AS d
   SET attempt = d.attempt + CASE WHEN o.sent THEN 1 ELSE 0 END,
       status = CASE WHEN o.sent THEN o.status ELSE d.status END,
       response_status = CASE WHEN o.sent THEN o.response_status ELSE d.response_status END,
       duration_ms = CASE WHEN o.sent THEN o.duration_ms ELSE d.duration_ms END,
       error = CASE WHEN o.sent THEN o.error ELSE d.error END,
       last_attempt_at = CASE WHEN o.sent THEN o.attempted_at ELSE d.last_attempt_at END,
       completed_at = CASE WHEN o.sent AND o.status <> 'PENDING' THEN o.attempted_at ELSE d.completed_at END,
       next_attempt_at = CASE WHEN o.sent THEN o.next_attempt_at ELSE d.next_attempt_at END,
       lease_until = NULL
  FROM unnest(%(ids)s::uuid[], %(sent)s::boolean[], %(statuses)s::varchar[], %(response_statuses)s::integer[],
              %(durations)s::integer[], %(errors)s::varchar[], %(attempted_at)s::timestamptz[],
              %(next_attempt_at)s::timestamptz[])
       AS o(id, sent, status, response_status, duration_ms, error, attempted_at, next_attempt_at)
 WHERE d.id = o.id AND d.status = 'PENDING' AND (o.sent OR d.lease_until = %(lease_until)s)
"""


def record(
    session: Session,
    batch: Batch,
    sent: Sequence[Sent],
    settings: Settings,
    *,
    claim_next: bool = True,
) -> Batch | None:
    """The batch's outcomes (and its endpoint's), its unsent deliveries released, in one statement;
    then, with `claim_next`, the endpoint's next batch (returned), else one of its due deliveries is
    noted for enqueueing after commit (the drain stops; a message takes it up again)."""
    locked = _lock_endpoint(session, batch.endpoint_id)
    if locked is None:
        return None  # deleted while the batch was in flight (its deliveries with it)
    endpoint, now = locked
    done = {s.attempt.delivery_id: s for s in sent}
    params: dict[str, list[Any]] = {
        key: []
        for key in (
            "ids", "sent", "statuses", "response_statuses", "durations", "errors", "attempted_at", "next_attempt_at",
        )
    }  # fmt: skip
    retries: dict[int, uuid.UUID] = {}
    for attempt in batch.attempts:
        s = done.get(attempt.delivery_id)
        params["ids"].append(attempt.delivery_id)
        params["sent"].append(s is not None)
        if s is None:
            for key in ("statuses", "response_statuses", "durations", "errors", "attempted_at", "next_attempt_at"):
                params[key].append(None)
            continue
        outcome = s.outcome
        at = now - timedelta(seconds=max(s.seconds_ago, 0.0))
        status, next_attempt_at = _decide(attempt, outcome, at, settings)
        params["statuses"].append(status.value)
        params["response_statuses"].append(outcome.response_status)
        params["durations"].append(outcome.duration_ms)
        params["errors"].append(outcome.error[:WEBHOOK_ERROR_LENGTH_MAX] if outcome.error else None)
        params["attempted_at"].append(at)
        params["next_attempt_at"].append(next_attempt_at)
        if status == DeliveryStatus.SUCCEEDED:
            _note_outcome(session, "succeeded", (at - attempt.event_created_at).total_seconds())
        elif status == DeliveryStatus.FAILED:
            _note_outcome(session, "failed", None)
        else:
            _note_outcome(session, "retrying", None)
            assert next_attempt_at is not None
            countdown = (next_attempt_at - now).total_seconds()
            if countdown <= RETRY_COUNTDOWN_SECONDS_MAX:
                # One message per endpoint per second of countdown: each drains what is due by then.
                retries.setdefault(max(0, int(countdown + 0.999)), attempt.delivery_id)
    session.connection().exec_driver_sql(_RECORD, {**params, "lease_until": batch.lease_until})
    session.info.setdefault(RETRY_NOTE, []).extend((d, float(c)) for c, d in sorted(retries.items()))
    _endpoint_outcomes(session, endpoint, sorted(sent, key=lambda s: -s.seconds_ago), now, settings)
    if claim_next:
        return _claim_locked(session, endpoint, now, settings)
    _note_due(session, endpoint.id, now)
    return None


def _decide(
    attempt: Attempt, outcome: Outcome, at: datetime, settings: Settings
) -> tuple[DeliveryStatus, datetime | None]:
    if outcome.succeeded:
        return DeliveryStatus.SUCCEEDED, None
    if outcome.blocked or at >= attempt.give_up_at:
        return DeliveryStatus.FAILED, None
    return DeliveryStatus.PENDING, min(at + backoff(attempt.attempts_made + 1, settings), attempt.give_up_at)


def _endpoint_outcomes(
    session: Session, endpoint: WebhookEndpoint, in_order: list[Sent], now: datetime, settings: Settings
) -> None:
    """`failing_since` follows the attempts in the order they finished: a success clears it, a failure
    starts it (when its request went out) unless it runs already. Failing for the whole window: DISABLED."""
    for s in in_order:
        if s.outcome.succeeded:
            endpoint.failing_since = None
        elif endpoint.failing_since is None:
            endpoint.failing_since = now - timedelta(seconds=s.seconds_ago, milliseconds=s.outcome.duration_ms)
    if endpoint.status == EndpointStatus.ENABLED and endpoint.failing_since is not None:
        failing = (now - endpoint.failing_since).total_seconds()
        if failing >= settings.webhook_disable_after_seconds:
            disable_failing(session, endpoint, now)
    session.flush()  # an UPDATE only when the mark moved


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


def _note_outcome(session: Session, outcome: str, latency_seconds: float | None) -> None:
    session.info.setdefault(OUTCOMES_NOTE, []).append((outcome, latency_seconds))


def _note_due(session: Session, endpoint_id: uuid.UUID, now: datetime) -> None:
    due = session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
    ).first()
    if due is not None:
        session.info.setdefault(ENQUEUE_NOTE, []).append(due)


def due_deliveries(session: Session, settings: Settings) -> list[uuid.UUID]:
    """For the sweeper: deliveries due for longer than `webhook_sweep_stale_seconds` and not held by
    a live attempt, oldest due first, at most a batch, and one per endpoint: each message drains its
    endpoint a batch at a time, so more messages for one endpoint would only find it busy."""
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
        .where(ranked.c.rank <= 1)
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
