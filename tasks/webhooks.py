"""Webhook delivery tasks: thin wrappers around notify/deliveries.py.

`deliver_webhook(delivery_id)` makes an attempt: claim the row (one transaction), POST outside any
transaction, record the outcome and claim the endpoint's next due delivery (a second one), and so
on. It runs on the `webhooks` queue, which a worker of its own consumes with a pool of threads
(Procfile `webhooks`): attempts wait on the network, not the CPU, and a slow endpoint must never
hold up settlement. The row is the truth; a message is only a nudge, so duplicates are harmless
(the lease lets one attempt through) and lost ones are swept up again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from models.db import session_factory
from notify import deliveries
from notify.client import shared_client
from notify.signing import signed_headers
from settings import get_settings
from workers.app import app

logger = logging.getLogger(__name__)

WEBHOOKS_QUEUE = "webhooks"
# Messages one enqueue sends at most; the sweeper finds the rest.
ENQUEUE_BATCH_MAX = 5000
# Attempts one task makes, going on from delivery to delivery of one endpoint; then the endpoint's
# due deliveries go back to the queue, so one busy endpoint does not keep a thread for ever.
CHAIN_ATTEMPTS_MAX = 200


@app.task(name="tasks.deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str:
    """This delivery's attempt, then the endpoint's next due ones in the same thread (its slot kept),
    each outcome recorded and the next one claimed in one transaction: no broker round trip and no
    second transaction per delivery. Returns the first attempt's outcome."""
    settings = get_settings()
    with session_factory().begin() as session:
        attempt = deliveries.claim(session, uuid.UUID(delivery_id), settings)
    if attempt is None:
        return "skipped"
    client = shared_client(
        allow_private=settings.webhook_allow_private,
        timeout_seconds=settings.webhook_timeout_seconds,
        response_bytes_max=settings.webhook_response_bytes_max,
    )
    first: str | None = None
    for made in range(1, CHAIN_ATTEMPTS_MAX + 1):
        headers = signed_headers(attempt.event_id, attempt.body, attempt.secrets, datetime.now(UTC))
        outcome = client.post(attempt.url, headers, attempt.body.encode())
        if not outcome.succeeded:
            logger.info(
                "webhook attempt failed", extra={"delivery_id": str(attempt.delivery_id), "error": outcome.error}
            )
        first = first or ("succeeded" if outcome.succeeded else "failed")
        last = made == CHAIN_ATTEMPTS_MAX
        with session_factory().begin() as session:
            deliveries.record_outcome(session, attempt, outcome, settings, note_due=last)
            following = None if last else deliveries.claim_next(session, attempt.endpoint_id, settings)
        enqueue_noted(session)
        if following is None:
            break
        attempt = following
    return first or "skipped"


@app.task(name="tasks.sweep_webhook_deliveries", acks_late=True, ignore_result=True)
def sweep_webhook_deliveries() -> int:
    """Beat: re-enqueue deliveries due for too long (lost messages, lapsed leases, broker outages)."""
    with session_factory().begin() as session:
        due = deliveries.due_deliveries(session, get_settings())
    return enqueue(due)


def enqueue(delivery_ids: Iterable[uuid.UUID]) -> int:
    """One attempt message per delivery. A broker that cannot take them loses nothing: the rows
    stay due and the sweeper enqueues them again."""
    sent = 0
    for delivery_id in list(delivery_ids)[:ENQUEUE_BATCH_MAX]:
        try:
            deliver_webhook.apply_async((str(delivery_id),), queue=WEBHOOKS_QUEUE)
        except Exception:  # the broker is down: the sweeper will find these rows
            logger.warning("could not enqueue webhook deliveries; the sweeper will", exc_info=True)
            break
        sent += 1
    return sent


def enqueue_noted(session: Session) -> int:
    """After a commit: enqueue the deliveries the unit of work noted as due, and the retries it
    scheduled soon enough for a countdown."""
    for delivery_id, countdown in session.info.pop(deliveries.RETRY_NOTE, ()):
        try:
            deliver_webhook.apply_async((str(delivery_id),), queue=WEBHOOKS_QUEUE, countdown=countdown)
        except Exception:  # the broker is down: the sweeper will find it once due
            logger.warning("could not schedule a webhook retry; the sweeper will", exc_info=True)
            break
    return enqueue(session.info.pop(deliveries.ENQUEUE_NOTE, ()))
