"""Expiring holds: ETA tasks for the holds that become HELD, and a sweeper behind them (beat).

Holds due at the same instant share their ETA tasks (`schedule_expiry`): 10,000 holds accepted
together and due together are 20 tasks of 500, each one transaction, not 10,000 transactions
queueing for the same wallets' locks. Every task calls `ledger.settlement.expiry.expire_due`, which
locks what it expires (SKIP LOCKED) and expires only HELD holds past `expires_at`: running any of
them twice, or all at once, expires each hold once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ledger.settlement.expiry import expire_due
from ledger.settlement.hold_outcomes import HOLDS_HELD_KEY
from models.db import session_factory
from settings import get_settings
from tasks.settlement import CONTENTION_ERRORS
from workers.app import app

logger = logging.getLogger(__name__)


def _expire_with_retries(expire: Callable[[Session], int]) -> int:
    """One transaction; a deadlock with a settlement batch (which may lock a wallet last that an
    expiry locks in id order: `ledger.settlement.posting.lock_wallets`) is retried a bounded number of times."""
    attempts_max = get_settings().settle_retries_max
    for attempt in range(1, attempts_max + 1):
        try:
            with session_factory().begin() as session:
                return expire(session)
        except DBAPIError as error:
            if not isinstance(error.orig, CONTENTION_ERRORS) or attempt == attempts_max:
                raise
            logger.warning("hold expiry contention, retrying", extra={"attempt": attempt})
    raise AssertionError("unreachable")


@app.task(name="tasks.expire_holds", acks_late=True, ignore_result=True)
def expire_holds(hold_ids: list[str]) -> int:
    """Expire these holds, those still HELD and due, in one transaction (scheduled at their expires_at)."""
    ids = [uuid.UUID(value) for value in hold_ids]
    return _expire_with_retries(lambda session: expire_due(session, hold_ids=ids, limit=len(ids)))


@app.task(name="tasks.expire_hold", acks_late=True, ignore_result=True)
def expire_hold(hold_id: str) -> int:
    """One hold's ETA task, as published before they were shared: messages still queued run as before."""
    return expire_holds([hold_id])


@app.task(name="tasks.sweep_expired_holds", acks_late=True, ignore_result=True)
def sweep_expired_holds() -> int:
    """Expire every HELD hold past its expires_at, in bounded batches (one transaction each)."""
    settings = get_settings()
    expired = 0
    for _ in range(settings.hold_sweep_batches_max):
        done = _expire_with_retries(lambda session: expire_due(session, limit=settings.hold_sweep_batch_size_max))
        expired += done
        if done < settings.hold_sweep_batch_size_max:
            break
    if expired:
        logger.info("holds expired by the sweeper", extra={"count": expired})
    return expired


def expiry_tasks(
    held: Sequence[tuple[uuid.UUID, datetime | None]], *, horizon: datetime, size: int
) -> list[tuple[datetime, list[uuid.UUID]]]:
    """The ETA tasks for these holds: (eta, hold ids) per instant they expire at, up to `size` ids
    each, for the holds due before `horizon` (the others are the sweeper's). A batch of holds that
    became HELD together with the same `expires_in` expires at one instant: a few tasks in all."""
    by_instant: dict[datetime, list[uuid.UUID]] = {}
    for hold_id, expires_at in held:
        if expires_at is not None and expires_at <= horizon:
            by_instant.setdefault(expires_at, []).append(hold_id)
    return [(eta, ids[start : start + size]) for eta, ids in by_instant.items() for start in range(0, len(ids), size)]


def schedule_expiry(held: Sequence[tuple[uuid.UUID, datetime | None]]) -> None:
    """The ETA tasks of holds that expire soon, one per instant (and per `hold_sweep_batch_size_max`
    holds). A lost one is swept."""
    settings = get_settings()
    horizon = datetime.now(UTC) + timedelta(seconds=settings.hold_expiry_eta_seconds_max)
    for eta, ids in expiry_tasks(held, horizon=horizon, size=settings.hold_sweep_batch_size_max):
        try:
            expire_holds.apply_async(args=[[str(i) for i in ids]], eta=eta, retry=False)
        except Exception:
            logger.warning("could not schedule holds' expiry; the sweeper will", exc_info=True)


def _after_commit(session: Session) -> None:
    held: Any = session.info.pop(HOLDS_HELD_KEY, None)
    if held:
        schedule_expiry(held)


def _after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(HOLDS_HELD_KEY, None)


# Installed where holds become HELD: in the worker, which imports this module (celeryconfig.imports).
if not event.contains(Session, "after_commit", _after_commit):
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_soft_rollback", _after_soft_rollback)
