"""Cancelling an intent before it settles: PENDING → CANCELLED; the P2P request it pays follows, and
a refund gives back the amount it reserved on its original.

Its own module because it sits above the kinds it touches: `ledger.intents.p2p` and
`ledger.intents.refunds` build on `ledger.intents.transfers`, and a cancelled transfer that pays a
request must fail that request (a cancelled refund release its amount) in the same database transaction.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.errors import Conflict, Forbidden
from ledger.intents import p2p, refunds
from ledger.intents.transfers import get_visible_transaction
from models import Transaction, TransactionStatus, TransactionType


def cancel(session: Session, actor: Actor, transaction_id: uuid.UUID) -> Transaction:
    """PENDING → CANCELLED. The row lock makes this race safely with a worker settling the intent."""
    transaction = get_visible_transaction(session, actor, transaction_id, for_update=True)
    initiator_admin = actor.is_org_admin and transaction.organization_id == actor.organization_id
    if transaction.created_by != actor.user_id and not initiator_admin:
        raise Forbidden("only the initiator or an OWNER/ADMIN may cancel", code="ROLE_REQUIRED")
    if transaction.type in (TransactionType.HOLD, TransactionType.CAPTURE):
        # A hold's intents follow the hold: cancelling one would strand the hold PENDING, or a
        # capture's reservation on it. A hold is released with POST /holds/{id}/void.
        raise Conflict(
            f"a {transaction.type} transaction is not cancelled; void its hold instead",
            code="TRANSACTION_NOT_CANCELLABLE",
        )
    if transaction.status != TransactionStatus.PENDING:
        raise Conflict(
            f"only a PENDING transaction can be cancelled; this one is {transaction.status}",
            code="TRANSACTION_NOT_PENDING",
        )
    transaction.status = TransactionStatus.CANCELLED
    transaction.completed_at = session.scalar(select(func.clock_timestamp()))
    session.flush()

    # A P2P request being paid by this intent fails with it; a refund gives back what it reserved.
    p2p.follow_outcomes(session, [], {transaction.id: p2p.TRANSACTION_CANCELLED}, transaction.completed_at)
    if transaction.type == TransactionType.REFUND:
        refunds.release(session, [transaction.id])
    return transaction
