"""The one way an intent row is born: PENDING, owned by the caller's organisation, waiting for the engine."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ledger.access import Actor
from models import Transaction, TransactionStatus, TransactionType


def add_pending_intent(
    session: Session,
    actor: Actor,
    intent_id: uuid.UUID,
    kind: TransactionType,
    *,
    amount: int,
    currency: str,
    source_wallet_id: uuid.UUID | None,
    destination_wallet_id: uuid.UUID | None,
    idempotency_key: str | None,
    **details: Any,
) -> Transaction:
    """Insert the PENDING row (flushed, so a unique key clash surfaces here); `details` are the kind's own
    columns (description, metadata_, hold_id, refund_of)."""
    intent = Transaction(
        id=intent_id,
        organization_id=actor.organization_id,
        created_by=actor.user_id,
        type=kind,
        status=TransactionStatus.PENDING,
        amount=amount,
        currency=currency,
        source_wallet_id=source_wallet_id,
        destination_wallet_id=destination_wallet_id,
        idempotency_key=idempotency_key,
        **details,
    )
    session.add(intent)
    session.flush()
    return intent
