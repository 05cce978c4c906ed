"""Parking an intent that cannot be settled, so that it stops holding back the intents behind it.

A batch that raises an unexpected error is split in halves until the culprit stands alone (the
caller: tasks.settlement). Each time an intent fails alone, its `settle_failures` grows; at the
bound it is parked: it stays PENDING (nothing was posted, and its owner may still cancel it),
`parked_at` and `park_reason` say when and why, and every claim, drain and sweep passes it by. It
also stops holding its wallet's order (ledger/settlement/order.py): the intents after it settle.

Contention (deadlocks, lock timeouts) and an unreachable database never count: they say nothing
about the intent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from models import TransactionStatus
from models.transaction import PARK_REASON_LENGTH_MAX

_RECORD_FAILURE = text(
    f"""
    UPDATE transactions
       SET settle_failures = settle_failures + 1,
           parked_at = CASE WHEN settle_failures + 1 >= :failures_max THEN clock_timestamp() END,
           park_reason = CASE WHEN settle_failures + 1 >= :failures_max THEN :reason END
     WHERE id = :id AND status = '{TransactionStatus.PENDING}' AND parked_at IS NULL
    RETURNING settle_failures, parked_at
    """
)


@dataclass(frozen=True)
class Failure:
    transaction_id: uuid.UUID
    failures: int
    parked_at: datetime | None
    reason: str


def reason_for(error: BaseException) -> str:
    """What an operator reads first: the error's kind and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()[:PARK_REASON_LENGTH_MAX]


def record_failure(session: Session, transaction_id: uuid.UUID, reason: str, *, failures_max: int) -> Failure | None:
    """Count one failure of this intent settled alone; park it at `failures_max`. None when it is no
    longer PENDING (or already parked): nothing to count."""
    row = session.execute(
        _RECORD_FAILURE, {"id": transaction_id, "reason": reason, "failures_max": failures_max}
    ).one_or_none()
    if row is None:
        return None
    return Failure(transaction_id, row.settle_failures, row.parked_at, reason)
