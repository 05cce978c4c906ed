"""Finding PENDING intents that have waited: to re-enqueue them (the sweep) or to settle a backlog."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models import Transaction, TransactionStatus


def _oldest_pending(older_than: timedelta, limit: int) -> Select[tuple[uuid.UUID]]:
    return (
        select(Transaction.id)
        .where(
            Transaction.status == TransactionStatus.PENDING,
            Transaction.created_at < func.now() - older_than,
        )
        .order_by(Transaction.created_at)
        .limit(limit)
    )


def stale_pending_ids(session: Session, *, older_than: timedelta, limit: int) -> list[uuid.UUID]:
    """Intents whose message was lost, or whose worker died holding it. Reads only."""
    return list(session.scalars(_oldest_pending(older_than, limit)))


def claim_oldest_pending(session: Session, *, limit: int, min_age: timedelta) -> list[uuid.UUID]:
    """Lock up to `limit` of the oldest PENDING intents at least `min_age` old that no one else holds.

    For draining a backlog: the caller settles them in the same transaction, so two drainers take
    disjoint batches (SKIP LOCKED) and an intent is never claimed twice.
    """
    query = _oldest_pending(min_age, limit).with_for_update(skip_locked=True, key_share=True)
    return list(session.scalars(query))
