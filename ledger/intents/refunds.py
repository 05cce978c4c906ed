"""Refunds: money sent back along a COMPLETED transfer, from its destination to its source.

A refund is one more intent kind through the one settlement engine: a PENDING transaction of type
REFUND, `refund_of` naming the original, settled in its wallets' order like any other (a receiver
without the funds: FAILED INSUFFICIENT_FUNDS), through the clearing wallets when it crosses
organisations (`ledger.clearing.routing` routes it as it routes a transfer).

The original keeps the count. `refunded_amount` is what its PENDING and COMPLETED refunds reserve,
and `refunds` lists them. Intake reserves the amount under the original's row lock, in a statement
that also refuses to pass the original's amount (a check in the database says the same), so two
refunds racing for the same money cannot both be accepted. A refund that fails gives its amount
back in the settlement transaction that fails it (`follow_outcomes`), one that is cancelled in the
cancel's (`release`). Lock order, as everywhere (`ledger.settlement.posting.lock_wallets`):
transactions rows first, refund before original, then wallets.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ledger.access import Actor, can_debit, system_wallet_refused
from ledger.errors import Conflict, Forbidden, InvalidRequest
from ledger.idempotency import claim_key, request_hash
from ledger.integrity import events
from ledger.intents.pending import add_pending_intent
from ledger.intents.transfers import Submitted, get_visible_transaction, replayed_transaction
from models import Transaction, TransactionStatus, TransactionType, Wallet, WalletType, ids
from models.transaction import REFUNDS_PER_TRANSACTION_MAX

# What may be refunded, by type name: a transfer, and a hold's capture (a type of its own where holds exist).
REFUNDABLE_TYPES = frozenset({TransactionType.TRANSFER.value, "CAPTURE"})
REFUND = TransactionType.REFUND.value
EVENT_TYPES = {TransactionStatus.COMPLETED.value: "refund.completed", TransactionStatus.FAILED.value: "refund.failed"}


@dataclass(frozen=True)
class RefundRequest:
    transaction_id: uuid.UUID
    amount: int | None = None  # None: all that is left to refund
    reason: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"transaction_id": str(self.transaction_id), "amount": self.amount, "reason": self.reason}


def refund_data(transaction: Transaction) -> dict[str, Any]:
    """A refund as its audit row and events carry it: the transaction, and the one it refunds."""
    return {**events.transaction_data(transaction), "refund_of": transaction.refund_of}


def _exceeds(original: Transaction, amount: int) -> InvalidRequest:
    left = original.amount - original.refunded_amount
    return InvalidRequest(
        f"refunds would exceed the transaction's amount: {left} is left to refund, {amount} was asked",
        code="REFUND_EXCEEDS_AMOUNT",
        details={"amount": original.amount, "refunded_amount": original.refunded_amount, "refundable_amount": left},
    )


def _check_refundable(session: Session, actor: Actor, original: Transaction) -> None:
    """Who may refund (whoever may debit its destination), what (a COMPLETED transfer or capture),
    and never through a SYSTEM wallet."""
    wallets = {
        w.id: w
        for w in session.scalars(
            select(Wallet).where(Wallet.id.in_([original.source_wallet_id, original.destination_wallet_id]))
        )
    }
    destination, source = wallets[original.destination_wallet_id], wallets[original.source_wallet_id]
    if not can_debit(session, actor, destination):
        raise Forbidden("only the owner or a CONTRIBUTOR of the receiving wallet may refund", code="NOT_WALLET_DEBITOR")
    if str(original.type) not in REFUNDABLE_TYPES or original.status != TransactionStatus.COMPLETED:
        raise Conflict(
            f"only a COMPLETED transfer or capture can be refunded; this is a {original.status} {original.type}",
            code="TRANSACTION_NOT_REFUNDABLE",
            details={"type": str(original.type), "status": str(original.status)},
        )
    if destination.type == WalletType.SYSTEM:
        raise system_wallet_refused("source")
    if source.type == WalletType.SYSTEM:
        raise system_wallet_refused("destination")
    if len(original.refunds) >= REFUNDS_PER_TRANSACTION_MAX:
        raise Conflict(
            f"a transaction can have at most {REFUNDS_PER_TRANSACTION_MAX} refunds", code="REFUND_LIMIT_REACHED"
        )


def _reserve(session: Session, original: Transaction, amount: int, refund_id: uuid.UUID) -> None:
    """Count the refund on the original, only if the refunds stay within its amount."""
    reserved = session.execute(
        update(Transaction)
        .where(Transaction.id == original.id, Transaction.refunded_amount + amount <= Transaction.amount)
        .values(
            refunded_amount=Transaction.refunded_amount + amount,
            refunds=func.array_append(Transaction.refunds, refund_id),
        )
        .returning(Transaction.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if reserved is None:
        raise _exceeds(original, amount)


def submit_refund(
    session: Session, actor: Actor, request: RefundRequest, *, idempotency_key: str | None = None
) -> Submitted:
    """Accept a refund of a transaction the caller may see; a worker settles it."""
    new_id = ids.new_id()
    if idempotency_key is not None:
        fingerprint = request_hash("refund", request.fingerprint_body())
        earlier_id = claim_key(session, actor.organization_id, idempotency_key, fingerprint, new_id)
        if earlier_id is not None:
            return Submitted(replayed_transaction(session, actor, earlier_id), created=False)
    original = get_visible_transaction(session, actor, request.transaction_id, for_update=True)
    _check_refundable(session, actor, original)
    left = original.amount - original.refunded_amount
    amount = left if request.amount is None else request.amount
    if amount <= 0 or amount > left:
        raise _exceeds(original, amount)
    _reserve(session, original, amount, new_id)
    refund = add_pending_intent(
        session,
        actor,
        new_id,
        TransactionType.REFUND,
        amount=amount,
        currency=original.currency,
        source_wallet_id=original.destination_wallet_id,
        destination_wallet_id=original.source_wallet_id,
        idempotency_key=idempotency_key,
        description=request.reason,
        refund_of=original.id,
    )
    return Submitted(refund, created=True)


# The originals of these refunds, locked before any wallet (the global lock order): a refund that
# fails gives its amount back to its original in the same transaction.
_LOCK_ORIGINALS = """
    SELECT id FROM transactions
     WHERE id IN (SELECT refund_of FROM transactions WHERE id = ANY(%(ids)b) AND refund_of IS NOT NULL)
     ORDER BY id
       FOR NO KEY UPDATE
"""


def lock_originals(session: Session, refund_ids: Sequence[uuid.UUID]) -> None:
    if refund_ids:
        session.connection().exec_driver_sql(_LOCK_ORIGINALS, {"ids": list(refund_ids)})


# What failed or cancelled refunds reserved goes back to their originals, summed per original.
_RELEASE = """
    UPDATE transactions AS o
       SET refunded_amount = o.refunded_amount - r.amount
      FROM (SELECT refund_of, sum(amount) AS amount FROM transactions
             WHERE id = ANY(%(ids)b) AND type = 'REFUND'
             GROUP BY refund_of) AS r
     WHERE o.id = r.refund_of
"""


def release(session: Session, refund_ids: Sequence[uuid.UUID]) -> None:
    """Give back what these refunds (failed or cancelled; other ids are ignored) reserved."""
    if refund_ids:
        session.flush()
        session.connection().exec_driver_sql(_RELEASE, {"ids": list(refund_ids)})


# One `refund.completed` / `refund.failed` event per refund that reached that status, in intent
# order, carrying the refund (`refund_data`) as its events' payloads do.
_EVENT_TYPE_SQL = " ".join(f"WHEN '{status}' THEN '{name}'" for status, name in EVENT_TYPES.items())
_RECORD_EVENTS = f"""
    INSERT INTO outbox_events (event_id, event_type, aggregate_type, aggregate_id, payload, wallet_ids,
                               organization_ids)
    SELECT uuid_v7(), CASE r.status {_EVENT_TYPE_SQL} END, 'transaction', r.id::text,
           {events.transaction_json_sql("r")} || jsonb_build_object('refund_of', r.refund_of::text),
           ARRAY(SELECT unnest(ARRAY[r.source_wallet_id, r.destination_wallet_id]) ORDER BY 1),
           ARRAY(SELECT DISTINCT organization_id FROM wallets
                  WHERE id IN (r.source_wallet_id, r.destination_wallet_id) ORDER BY 1)
      FROM transactions AS r
     WHERE r.id = ANY(%(ids)b) AND r.type = 'REFUND' AND r.status IN ({", ".join(f"'{s}'" for s in EVENT_TYPES)})
     ORDER BY r.created_at, r.id
"""


def follow_outcomes(session: Session, completed: Sequence[uuid.UUID], failed: Sequence[uuid.UUID]) -> None:
    """Refunds among intents that just reached a final status (other ids are ignored): a failed one
    gives its amount back to its original, and each announces `refund.completed` / `refund.failed`.
    Runs in the settlement transaction that wrote those statuses, after them."""
    release(session, failed)
    ids_ = [*completed, *failed]
    if ids_ and session.connection().exec_driver_sql(_RECORD_EVENTS, {"ids": ids_}).rowcount:
        session.info[events.OUTBOX_WRITTEN_KEY] = True
