"""Celery tasks that settle intents. Thin: take ids, open one transaction, call ledger.settlement.posting."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

import psycopg.errors
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from ledger.settlement import parking
from ledger.settlement.posting import LateWalletChanged, SettleOutcome, settle_oldest_pending
from ledger.settlement.posting import settle_transfers as post_transfers
from ledger.settlement.sweep import stale_pending_ids
from models.db import session_factory
from ops.metrics import INTENTS_PARKED
from settings import get_settings
from tasks.outbox import RELAY_WHILE_DRAINING_MIN, relay_while_draining
from tasks.wake import Wake
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


def _is_contention(error: Exception) -> bool:
    if isinstance(error, LateWalletChanged):
        return True  # a wallet changed status between the plan and its lock: plan again
    return isinstance(error, DBAPIError) and isinstance(error.orig, CONTENTION_ERRORS)


def _settle_with_retries(settle: Callable[[Session], SettleOutcome]) -> SettleOutcome:
    """One database transaction; contention is retried a bounded number of times."""
    attempts_max = get_settings().settle_retries_max
    for attempt in range(1, attempts_max + 1):
        try:
            with session_factory().begin() as session:
                return settle(session)
        except (DBAPIError, LateWalletChanged) as error:
            if not _is_contention(error) or attempt == attempts_max:
                raise
            logger.warning("settlement contention, retrying", extra={"attempt": attempt})
    raise AssertionError("unreachable")


def settle_once(transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    return _settle_with_retries(lambda session: post_transfers(session, transaction_ids))


def settle_or_bisect(transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    """Settle a batch; if it fails unexpectedly, settle each half on its own until the culprit stands
    alone. The culprit stays PENDING (parked once it has failed alone often enough: ledger/settlement/parking.py)
    and its error is raised after the others are settled."""
    outcome, error = _bisect(transaction_ids)
    if error is not None:
        raise error
    return outcome


def _bisect(transaction_ids: Sequence[uuid.UUID]) -> tuple[SettleOutcome, Exception | None]:
    try:
        return settle_once(transaction_ids), None
    except OperationalError:
        raise  # the database itself is unreachable; splitting would not help
    except Exception as error:
        if len(transaction_ids) == 1:
            logger.exception("intent could not be settled; it stays PENDING", extra={"ids": transaction_ids})
            if not _is_contention(error):
                _count_failure(transaction_ids[0], error)
            return SettleOutcome(completed=0, failed=0, skipped=0), error
        middle = len(transaction_ids) // 2
        halves = [_bisect(half) for half in (transaction_ids[:middle], transaction_ids[middle:])]
        first_error = next((e for _, e in halves if e is not None), None)
        return _sum([o for o, _ in halves]), first_error


def _sum(outcomes: Sequence[SettleOutcome]) -> SettleOutcome:
    """The counts added up (a sum of batches has no one organisation)."""
    counts = [f.name for f in fields(SettleOutcome) if f.name != "organization_id"]
    return SettleOutcome(**{name: sum(getattr(o, name) for o in outcomes) for name in counts})


def _count_failure(transaction_id: uuid.UUID, error: Exception) -> None:
    """One more failure of this intent alone, in a transaction of its own; at the bound it is parked,
    which is an operator's business: logged at CRITICAL and counted."""
    try:
        with session_factory().begin() as session:
            failure = parking.record_failure(
                session,
                transaction_id,
                parking.reason_for(error),
                failures_max=get_settings().settle_failures_before_park,
            )
    except Exception:
        logger.warning("could not count a settle failure", extra={"transaction_id": str(transaction_id)}, exc_info=True)
        return
    if failure is not None and failure.parked_at is not None:
        INTENTS_PARKED.inc()
        logger.critical(
            "intent parked: settling it failed %d times; it stays PENDING until an operator acts",
            failure.failures,
            extra={"transaction_id": str(transaction_id), "reason": failure.reason, "failures": failure.failures},
        )


@dataclass(frozen=True)
class Drained:
    settled: int
    backlog_left: bool  # stopped at batches_max with full batches: more may be waiting
    # Stopped at a batch that settled nothing: every intent it claimed waits behind an older one
    # that another batch, not yet committed, holds (ledger/settlement/order.py). A drain comes back shortly.
    waiting: bool = False


def drain_backlog(batches_max: int) -> Drained:
    """Settle up to `batches_max` batches of the oldest PENDING intents that no one else holds.

    Each batch is its own transaction: claim (SKIP LOCKED) and settle together, so concurrent
    drainers take disjoint batches. A batch that raises is settled again in halves by id until the
    culprit stands alone (`settle_or_bisect`): the others settle, and the culprit, failing again in
    each later round, is parked at the bound and passed by from then on. An unreachable database
    stops draining quietly; the sweep re-enqueues what waits too long.
    """
    settings = get_settings()
    settled = 0
    # Organisations whose backlog a short batch took: the rest of this drain passes them over, so
    # their intents accepted meanwhile are gathered by the next wake (as before batches were one
    # organisation's), while other organisations' waiting intents are taken now.
    passed: list[uuid.UUID] = []
    for _ in range(batches_max):
        try:
            outcome = _settle_with_retries(
                lambda session: settle_oldest_pending(session, limit=settings.settle_batch_size_max, passed=passed)
            )
        except OperationalError:
            logger.warning("draining stopped; the sweep settles what is left", exc_info=True)
            break
        except Exception:
            logger.warning("a batch failed; settling it in halves to find the culprit", exc_info=True)
            settled += _bisect_oldest(settings.settle_batch_size_max)
            continue  # the culprit counts one failure per round, until it is parked
        settled += outcome.decided
        if outcome.deferred and not outcome.decided:
            return Drained(settled, backlog_left=False, waiting=True)  # not a spin until the other commits
        if not outcome.deferred and not outcome.decided:
            break  # the backlog is gone; intents left for a later batch are taken in the next round
        if not outcome.deferred and outcome.decided < settings.settle_batch_size_max and outcome.organization_id:
            # That organisation's backlog is gone, not the others' (a batch is one organisation's
            # intents: ledger/settlement/posting.py): the next claim takes another organisation's.
            passed.append(outcome.organization_id)
        if outcome.decided >= RELAY_WHILE_DRAINING_MIN:
            relay_while_draining()  # the relay task would wait for this drain and the others to end
    else:
        return Drained(settled, backlog_left=True)
    return Drained(settled, backlog_left=False)


def _bisect_oldest(limit: int) -> int:
    """The oldest PENDING intents, as a failed drain batch claimed them, settled in halves by id."""
    with session_factory().begin() as session:
        ids = stale_pending_ids(session, older_than=timedelta(0), limit=limit)
    try:
        outcome, _ = _bisect(ids)
    except OperationalError:
        return 0
    return outcome.decided


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
    drained = _drain_and_rewake()  # also takes the intents of ours left for a later batch
    return {"completed": outcome.completed, "failed": outcome.failed, "skipped": outcome.skipped, "drained": drained}


# Single intents from the API do not get a task each: the first one after a drain started publishes
# a wake (tasks/wake.py) that runs settle_gather_ms later, and the drain settles every intent
# committed before it began reading, in batches. At 600 intents/s that is tens of intents per task
# instead of one. The key lives longer than the gather window, so the window's intents ride along.
SETTLE_WAKE = Wake(key="vaultcraft:settle:wake", ttl_ms=2000)


@app.task(name="tasks.drain_pending", acks_late=True, ignore_result=True)
def drain_pending() -> int:
    """Settle every PENDING intent no other worker holds, oldest first, in batches."""
    SETTLE_WAKE.started()
    return _drain_and_rewake()


def _drain_and_rewake() -> int:
    settings = get_settings()
    drained = drain_backlog(settings.settle_drain_batches_max)
    if drained.backlog_left:
        SETTLE_WAKE.request(drain_pending)  # a long backlog continues in the next task, not in this one
    elif drained.waiting:
        SETTLE_WAKE.request(drain_pending, countdown=settings.settle_gather_ms / 1000)
    return drained.settled


def settle_soon(transaction_ids: Sequence[uuid.UUID]) -> bool:
    """Intents just committed will be settled shortly, by a drain that is already on its way or by
    the one this publishes. False when neither Redis nor the broker took it: the sweep heals."""
    del transaction_ids  # a drain settles whatever is PENDING; the ids document the call site
    return SETTLE_WAKE.request(drain_pending, countdown=get_settings().settle_gather_ms / 1000)


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
