"""Expiring holds: a task with an ETA per hold that becomes HELD, and a sweeper behind it (beat).

Both call `ledger.intents.holds.expire_due`, which locks what it expires (SKIP LOCKED) and expires
only HELD holds past `expires_at`: running either twice, or both at once, expires a hold once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from ledger.intents.holds import expire_due
from ledger.settlement.hold_outcomes import HOLDS_HELD_KEY
from models.db import session_factory
from settings import get_settings
from workers.app import app

logger = logging.getLogger(__name__)


@app.task(name="tasks.expire_hold", acks_late=True, ignore_result=True)
def expire_hold(hold_id: str) -> int:
    """Expire this hold if it is still HELD and due (scheduled with its expires_at as ETA)."""
    with session_factory().begin() as session:
        return expire_due(session, hold_ids=[uuid.UUID(hold_id)], limit=1)


@app.task(name="tasks.sweep_expired_holds", acks_late=True, ignore_result=True)
def sweep_expired_holds() -> int:
    """Expire every HELD hold past its expires_at, in bounded batches (one transaction each)."""
    settings = get_settings()
    expired = 0
    for _ in range(settings.hold_sweep_batches_max):
        with session_factory().begin() as session:
            done = expire_due(session, limit=settings.hold_sweep_batch_size_max)
        expired += done
        if done < settings.hold_sweep_batch_size_max:
            break
    if expired:
        logger.info("holds expired by the sweeper", extra={"count": expired})
    return expired


def schedule_expiry(held: list[tuple[uuid.UUID, datetime]]) -> None:
    """One expire_hold task per hold that expires soon, at its expires_at. A lost one is swept."""
    horizon = datetime.now(UTC) + timedelta(seconds=get_settings().hold_expiry_eta_seconds_max)
    for hold_id, expires_at in held:
        if expires_at is None or expires_at > horizon:
            continue
        try:
            expire_hold.apply_async(args=[str(hold_id)], eta=expires_at, retry=False)
        except Exception:
            logger.warning("could not schedule a hold's expiry; the sweeper will", exc_info=True)


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
