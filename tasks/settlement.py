"""Celery tasks that settle intents. Thin: take ids, open one transaction, call ledger.posting."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg.errors
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.posting import SettleOutcome
from ledger.posting import settle_transfers as post_transfers
from ledger.sweep import claim_oldest_pending, stale_pending_ids
from models.db import session_factory
from settings import get_settings
from workers.app import app

logger = logging.getLogger(__name__)

# Failures that mean "another transaction got in the way": running again is the fix.
CONTENTION_ERRORS = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.LockNotAvailable,
)
DATABASE_UNAVAILABLE_RETRY_SECONDS = 2
DATABASE_UNAVAILABLE_RETRIES_MAX = 30


def _is_contention(error: DBAPIError) -> bool:
    return isinstance(error.orig, CONTENTION_ERRORS)


def settle_once(transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    """One database transaction; contention is retried a bounded number of times."""
    attempts_max = get_settings().settle_retries_max
    for attempt in range(1, attempts_max + 1):
        try:
            with session_factory().begin() as session:
                return post_transfers(session, transaction_ids)
        except DBAPIError as error:
            if not _is_contention(error) or attempt == attempts_max:
                raise
            logger.warning("settlement contention, retrying", extra={"attempt": attempt})
    raise AssertionError("unreachable")


def settle_or_bisect(transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    """Settle a batch; if it fails unexpectedly, settle each half on its own until the culprit stands
    alone. The culprit stays PENDING and its error is raised after the others are settled."""
    try:
        return settle_once(transaction_ids)
    except OperationalError:
        raise  # the database itself is unreachable; splitting would not help
    except Exception:
        if len(transaction_ids) == 1:
            logger.exception("intent could not be settled; it stays PENDING", extra={"ids": transaction_ids})
            raise
        middle = len(transaction_ids) // 2
        halves = (transaction_ids[:middle], transaction_ids[middle:])
        outcomes, first_error = [], None
        for half in halves:
            try:
                outcomes.append(settle_or_bisect(half))
            except Exception as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error from None
        return SettleOutcome(*(sum(getattr(o, f) for o in outcomes) for f in ("completed", "failed", "skipped")))


def drain_backlog(batches_max: int) -> SettleOutcome:
    """Settle up to `batches_max` batches of the oldest PENDING intents that no one else holds.

    Each batch is its own transaction: claim (SKIP LOCKED) and settle together, so concurrent
    drainers take disjoint batches. Draining is an optimisation, never the guarantee (each intent
    still has its message, and the sweep): any error stops it quietly and leaves the rest PENDING.
    """
    settings = get_settings()
    min_age = timedelta(milliseconds=settings.settle_drain_min_age_ms)
    totals = SettleOutcome(completed=0, failed=0, skipped=0)
    for _ in range(batches_max):
        try:
            with session_factory().begin() as session:
                ids = claim_oldest_pending(session, limit=settings.settle_batch_size_max, min_age=min_age)
                if not ids:
                    break
                outcome = post_transfers(session, ids)
        except Exception:
            logger.warning("draining stopped; the intents' own messages and the sweep settle them", exc_info=True)
            break
        totals = SettleOutcome(totals.completed + outcome.completed, totals.failed + outcome.failed, 0)
        if len(ids) < settings.settle_batch_size_max:
            break  # the backlog is gone
    return totals


@app.task(name="tasks.settle_transfers", bind=True, acks_late=True, reject_on_worker_lost=True)
def settle_transfers(self: Any, transaction_ids: list[str]) -> dict[str, int]:
    """Settle these intents, then drain whatever backlog has built up behind them."""
    ids = [uuid.UUID(value) for value in transaction_ids]
    try:
        outcome = settle_or_bisect(ids)
    except OperationalError as error:
        if _is_contention(error):
            raise
        # Postgres is restarting or unreachable: try again shortly; the sweep is the last resort.
        raise self.retry(
            exc=error, countdown=DATABASE_UNAVAILABLE_RETRY_SECONDS, max_retries=DATABASE_UNAVAILABLE_RETRIES_MAX
        ) from error
    drained = drain_backlog(get_settings().settle_drain_batches_max)
    return {
        "completed": outcome.completed,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "drained": drained.completed + drained.failed,
    }


def enqueue_settlement(transaction_ids: Sequence[uuid.UUID]) -> bool:
    """Publish a settle task for intents that are already committed. False when the broker is down:
    the intents are durable, and the sweep will enqueue them once it is back."""
    try:
        settle_transfers.apply_async(args=[[str(i) for i in transaction_ids]], retry=False)
    except Exception:
        logger.warning("could not publish settlement; the sweep will retry", exc_info=True)
        return False
    return True


@app.task(name="tasks.sweep_pending_transactions", acks_late=True)
def sweep_pending_transactions() -> int:
    """Re-enqueue intents left PENDING longer than the bound (lost message, crash before publish)."""
    settings = get_settings()
    with session_factory().begin() as session:
        stale = stale_pending_ids(
            session,
            older_than=timedelta(seconds=settings.pending_stale_seconds),
            limit=settings.sweep_batch_size_max,
        )
    batch = settings.settle_batch_size_max
    for start in range(0, len(stale), batch):
        enqueue_settlement(stale[start : start + batch])
    if stale:
        logger.info("re-enqueued stale pending intents", extra={"count": len(stale)})
    return len(stale)
