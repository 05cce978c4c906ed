"""Deciding transfers in review (ledger/settlement/review.py sends them there): approve, reject, expire.

Four eyes: an OWNER/ADMIN of the sending organisation who did not create the transfer decides it.
Each decision takes the transfer's row lock, then its source wallet's (the engine's order: intent,
then wallets), so two decisions, or a decision and the expiry sweeper, never both win.

APPROVE releases the hold and puts the transfer back in line, PENDING and marked approved: the
engine settles it under the normal checks (funds, wallet status, risk limits) and never sends it
back to review. REJECT and expiry release the hold and fail it (REJECTED_IN_REVIEW, REVIEW_EXPIRED).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ledger import analytics, monitors
from ledger.access import Actor, require_org_admin
from ledger.errors import Conflict, Forbidden
from ledger.integrity import audit, events
from ledger.intents.transfers import get_visible_transaction, visible_transactions
from ledger.pagination import Page, paginate
from ledger.settlement.review import review_data
from models import FailureReason, ReviewDecision, Transaction, TransactionStatus

REVIEWED = "transaction.reviewed"
REVIEW_EXPIRED_ACTION = "transaction.review_expired"
REVIEW_SWEEPER_LABEL = "system:review"


class Decision(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


def list_reviews(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page[Transaction]:
    """Transfers IN_REVIEW the caller may see, newest first."""
    query = visible_transactions(actor).where(Transaction.status == TransactionStatus.IN_REVIEW)
    keys = (Transaction.created_at, Transaction.id)
    return paginate(session, query, keys=keys, kinds=(datetime, uuid.UUID), limit=limit, cursor=cursor)


def decide(
    session: Session, actor: Actor, transaction_id: uuid.UUID, decision: Decision, note: str | None
) -> Transaction:
    """APPROVE (back to PENDING, approved: the caller enqueues it) or REJECT (FAILED) a transfer in review."""
    transaction = get_visible_transaction(session, actor, transaction_id, for_update=True)
    require_org_admin(actor)
    if transaction.organization_id != actor.organization_id:
        raise Forbidden("only the sending organisation reviews a transfer", code="ROLE_REQUIRED")
    if transaction.created_by == actor.user_id:
        raise Forbidden("a transfer is reviewed by someone other than its creator", code="FOUR_EYES")
    if transaction.status != TransactionStatus.IN_REVIEW:
        raise Conflict(
            f"only a transfer IN_REVIEW can be reviewed; this one is {transaction.status}", code="NOT_IN_REVIEW"
        )
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    _release_holds(session, [transaction])
    transaction.reviewed_by = actor.user_id
    transaction.reviewed_at = now
    transaction.review_note = note
    if decision is Decision.APPROVE:
        transaction.review_decision = ReviewDecision.APPROVED
        transaction.status = TransactionStatus.PENDING
    else:
        transaction.review_decision = ReviewDecision.REJECTED
        _fail(transaction, FailureReason.REJECTED_IN_REVIEW, now)
    session.flush()
    events.record_event(
        session,
        REVIEWED,
        aggregate=("transaction", transaction.id),
        data={**review_data(transaction), "decision": decision.value},
        wallet_ids=[transaction.source_wallet_id],
        organization_ids=[transaction.organization_id],
    )
    if decision is Decision.REJECT:
        events.record_transaction_events(session, [transaction.id])
        analytics.record_settled(session, [transaction.id])
    return transaction


def _fail(transaction: Transaction, reason: FailureReason, now: datetime) -> None:
    transaction.status = TransactionStatus.FAILED
    transaction.failure_reason = reason
    transaction.completed_at = now


_LOCK_SOURCES = text("SELECT id FROM wallets WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE")
_RELEASE = text(
    """
    UPDATE wallets AS w SET held_amount = w.held_amount - v.amount, updated_at = now()
      FROM (SELECT id, sum(amount) AS amount FROM unnest(CAST(:ids AS uuid[]), CAST(:amounts AS bigint[]))
                AS r(id, amount) GROUP BY id) AS v
     WHERE w.id = v.id
    RETURNING w.id, w.balance, w.held_amount
    """
)


def _release_holds(session: Session, transactions: Sequence[Transaction]) -> None:
    """Give back what these transfers in review hold on their sources (wallets locked in id order)."""
    ids = [t.source_wallet_id for t in transactions]
    session.execute(_LOCK_SOURCES, {"ids": sorted(set(ids))})
    released = session.execute(_RELEASE, {"ids": ids, "amounts": [t.amount for t in transactions]}).all()
    # A release can carry a wallet back across a balance monitor's threshold (ledger/monitors.py).
    first = {t.source_wallet_id: t.id for t in reversed(transactions)}
    for wallet_id, balance, held in released:
        monitors.released(session, wallet_id, balance, held, transaction_id=first[wallet_id])


_DUE = text(
    """
    SELECT id FROM transactions
     WHERE status = 'IN_REVIEW' AND review_started_at < CAST(:before AS timestamptz)
     ORDER BY review_started_at
     LIMIT :limit
       FOR NO KEY UPDATE SKIP LOCKED
    """
)


def expire_due(session: Session, *, window: timedelta, limit: int) -> int:
    """Fail every transfer IN_REVIEW for longer than `window` (up to `limit`), REVIEW_EXPIRED, releasing
    its hold. Rows another transaction holds (a decision under way) are skipped: safe to run twice at once."""
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    ids = list(session.scalars(_DUE, {"before": now - window, "limit": limit}))
    if not ids:
        return 0
    due = list(session.scalars(select(Transaction).where(Transaction.id.in_(ids))))
    _release_holds(session, due)
    for transaction in due:
        transaction.review_decision = ReviewDecision.EXPIRED
        transaction.reviewed_at = now
        _fail(transaction, FailureReason.REVIEW_EXPIRED, now)
        audit.record(
            session,
            None,
            REVIEW_EXPIRED_ACTION,
            target=("transaction", transaction.id),
            before={"status": TransactionStatus.IN_REVIEW.value},
            after={"status": TransactionStatus.FAILED.value, "failure_reason": FailureReason.REVIEW_EXPIRED.value},
            organization_id=transaction.organization_id,
            actor_label=REVIEW_SWEEPER_LABEL,
        )
    session.flush()
    events.record_transaction_events(session, [t.id for t in due])
    analytics.record_settled(session, [t.id for t in due])
    return len(due)
