"""Finding intents that have waited too long: their message was lost, or a worker died holding it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Transaction, TransactionStatus


def stale_pending_ids(session: Session, *, older_than: timedelta, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Transaction.id)
            .where(
                Transaction.status == TransactionStatus.PENDING,
                Transaction.created_at < func.now() - older_than,
            )
            .order_by(Transaction.created_at)
            .limit(limit)
        )
    )
