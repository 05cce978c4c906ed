"""Webhook delivery tasks: thin wrappers around notify/deliveries.py.

`deliver_webhook(delivery_id)` drains the delivery's endpoint: claim a batch of its due deliveries
(one transaction), send them outside any transaction over the process's persistent connections, at
most `webhook_endpoint_in_flight_max` at once, record every outcome and claim the endpoint's next
batch (a second one), and so on. It runs on the `webhooks` queue, which a worker of its own consumes
with a pool of threads (Procfile `webhooks`): attempts wait on the network, not the CPU, and a slow
endpoint must never hold up settlement. The row is the truth; a message is only a nudge, so
duplicates are harmless (one drain per endpoint at a time) and lost ones are swept up again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from models.db import session_factory
from notify import deliveries
from notify.client import Outcome, WebhookClient, shared_client
from notify.signing import Signer
from settings import Settings, get_settings
from workers.app import app

logger = logging.getLogger(__name__)

WEBHOOKS_QUEUE = "webhooks"
# Messages one enqueue sends at most; the sweeper finds the rest.
ENQUEUE_BATCH_MAX = 5000
# Batches one task drains, going on from batch to batch of one endpoint; then the endpoint's due
# deliveries go back to the queue, so one busy endpoint does not keep a thread for ever.
CHAIN_BATCHES_MAX = 20


@app.task(name="tasks.deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str:
    """The delivery's endpoint drained a batch at a time (see the module docstring). Returns the
    first attempt's outcome, or "skipped" when nothing was claimed."""
    settings = get_settings()
    with session_factory().begin() as session:
        batch = deliveries.claim(session, uuid.UUID(delivery_id), settings)
    if batch is None:
        return "skipped"
    client = shared_client(
        allow_private=settings.webhook_allow_private,
        timeout_seconds=settings.webhook_timeout_seconds,
        response_bytes_max=settings.webhook_response_bytes_max,
    )
    first: str | None = None
    with ThreadPoolExecutor(max_workers=max(1, settings.webhook_endpoint_in_flight_max - 1)) as helpers:
        for made in range(1, CHAIN_BATCHES_MAX + 1):
            sent = send_batch(batch, client, settings, helpers)
            if sent and first is None:
                first = "succeeded" if sent[0].outcome.succeeded else "failed"
            last = made == CHAIN_BATCHES_MAX
            with session_factory().begin() as session:
                following = deliveries.record(session, batch, sent, settings, claim_next=not last)
            enqueue_noted(session)
            if following is None:
                break
            batch = following
    return first or "skipped"


def send_batch(
    batch: deliveries.Batch, client: WebhookClient, settings: Settings, helpers: ThreadPoolExecutor | None = None
) -> list[deliveries.Sent]:
    """POST the batch's deliveries, oldest due first, at most `webhook_endpoint_in_flight_max` at once
    (this thread and helpers from `helpers`). None starts after `SEND_WINDOW_SECONDS`, nor after an
    attempt got no answer at all (a slow or dead endpoint: the rest wait for the next batch). Each
    outcome carries how long before the record it finished; unsent deliveries are left out."""
    started = time.monotonic()
    signer = Signer(batch.secrets)
    pending = list(reversed(batch.attempts))
    finished: list[tuple[deliveries.Attempt, Outcome, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            with lock:
                if not pending or time.monotonic() - started > deliveries.SEND_WINDOW_SECONDS:
                    return
                attempt = pending.pop()
            headers = signer.headers(attempt.event_id, attempt.body, datetime.now(UTC))
            outcome = client.post(batch.url, headers, attempt.body.encode())
            if not outcome.succeeded:
                logger.info(
                    "webhook attempt failed", extra={"delivery_id": str(attempt.delivery_id), "error": outcome.error}
                )
                if outcome.response_status is None and not outcome.blocked:
                    stop.set()
            with lock:
                finished.append((attempt, outcome, time.monotonic()))

    concurrency = max(1, min(settings.webhook_endpoint_in_flight_max, len(batch.attempts)))
    others = [helpers.submit(work) for _ in range(concurrency - 1)] if helpers is not None else []
    work()
    for other in others:
        other.result()
    recorded = time.monotonic()
    order = {a.delivery_id: n for n, a in enumerate(batch.attempts)}
    finished.sort(key=lambda f: order[f[0].delivery_id])
    return [deliveries.Sent(attempt, outcome, recorded - at) for attempt, outcome, at in finished]


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
