"""Finding PENDING intents that have waited, to re-enqueue them (the sweep).

A backlog drain claims and settles the oldest ones itself, in the same order, in one statement
(`ledger.settlement.posting.settle_oldest_pending`).
"""

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
            Transaction.parked_at.is_(None),  # parked: it waits for an operator (ledger/settlement/parking.py)
        )
        .order_by(Transaction.created_at, Transaction.id)  # ties as the per-wallet order ranks them
        .limit(limit)
    )


def stale_pending_ids(session: Session, *, older_than: timedelta, limit: int) -> list[uuid.UUID]:
    """Intents whose message was lost, or whose worker died holding it, or a failed batch's intents
    to settle in halves (with `older_than` 0). Reads only; parked intents are left out."""
    return list(session.scalars(_oldest_pending(older_than, limit)))
