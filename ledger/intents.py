"""Transfer, deposit and withdrawal intents: validated, idempotent, written as durable PENDING rows.

Nothing here moves money; `ledger.posting` settles the intents later, under row locks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from ledger.access import (
    Actor,
    get_debitable_wallet,
    get_visible_wallet,
    require_org_admin,
    require_transfer_access,
    visible_wallets,
)
from ledger.errors import Conflict, Forbidden, InvalidRequest, NotFound
from ledger.idempotency import claim_key, request_hash
from ledger.pagination import Page, paginate
from ledger.wallets import get_or_create_system_wallet
from models import LedgerEntry, Transaction, TransactionStatus, TransactionType, Wallet


@dataclass(frozen=True)
class TransferRequest:
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    description: str | None = None
    metadata: dict[str, Any] | None = field(default=None)

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "source_wallet_id": str(self.source_wallet_id),
            "destination_wallet_id": str(self.destination_wallet_id),
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Submitted:
    transaction: Transaction
    created: bool


def _replay(
    session: Session, actor: Actor, operation: str, body: dict[str, Any], key: str | None, new_id: uuid.UUID
) -> Transaction | None:
    """The transaction an earlier request with this key made, or None when the key is new (now claimed)."""
    if key is None:
        return None
    existing_id = claim_key(session, actor.organization_id, key, request_hash(operation, body), new_id)
    return None if existing_id is None else session.get_one(Transaction, existing_id)


def _insert_intent(
    session: Session,
    actor: Actor,
    *,
    transaction_id: uuid.UUID,
    transaction_type: TransactionType,
    request: TransferRequest,
    idempotency_key: str | None,
) -> Transaction:
    intent = Transaction(
        id=transaction_id,
        organization_id=actor.organization_id,
        created_by=actor.user_id,
        type=transaction_type,
        status=TransactionStatus.PENDING,
        amount=request.amount,
        currency=request.currency,
        source_wallet_id=request.source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        description=request.description,
        metadata_=request.metadata,
        idempotency_key=idempotency_key,
    )
    session.add(intent)
    session.flush()
    return intent


def submit_transfer(
    session: Session, actor: Actor, request: TransferRequest, *, idempotency_key: str | None = None
) -> Submitted:
    """Accept a transfer from a wallet the caller may debit to any wallet, in any organisation."""
    new_id = uuid.uuid4()
    earlier = _replay(session, actor, "transfer", request.fingerprint_body(), idempotency_key, new_id)
    if earlier is not None:
        return Submitted(earlier, created=False)
    if request.source_wallet_id == request.destination_wallet_id:
        raise InvalidRequest("source and destination must be different wallets", code="SAME_WALLET")
    require_transfer_access(session, actor, request.source_wallet_id, request.destination_wallet_id)
    intent = _insert_intent(
        session,
        actor,
        transaction_id=new_id,
        transaction_type=TransactionType.TRANSFER,
        request=request,
        idempotency_key=idempotency_key,
    )
    return Submitted(intent, created=True)


def _treasury_move(
    session: Session,
    actor: Actor,
    *,
    wallet: Wallet,
    amount: int,
    transaction_type: TransactionType,
    idempotency_key: str | None,
    description: str | None,
) -> Submitted:
    new_id = uuid.uuid4()
    body = {"wallet_id": str(wallet.id), "amount": amount, "description": description}
    earlier = _replay(session, actor, transaction_type.value, body, idempotency_key, new_id)
    if earlier is not None:
        return Submitted(earlier, created=False)
    treasury_id = get_or_create_system_wallet(session, wallet.organization_id, wallet.currency)
    if treasury_id == wallet.id:
        raise InvalidRequest("the treasury cannot deposit into or withdraw from itself", code="SAME_WALLET")
    into_wallet = transaction_type is TransactionType.DEPOSIT
    request = TransferRequest(
        source_wallet_id=treasury_id if into_wallet else wallet.id,
        destination_wallet_id=wallet.id if into_wallet else treasury_id,
        amount=amount,
        currency=wallet.currency,
        description=description,
    )
    intent = _insert_intent(
        session,
        actor,
        transaction_id=new_id,
        transaction_type=transaction_type,
        request=request,
        idempotency_key=idempotency_key,
    )
    return Submitted(intent, created=True)


def submit_deposit(
    session: Session,
    actor: Actor,
    wallet_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str | None = None,
    description: str | None = None,
) -> Submitted:
    """Money entering the system: from the organisation's treasury into the wallet. OWNER/ADMIN only."""
    wallet = get_visible_wallet(session, actor, wallet_id)
    require_org_admin(actor)
    return _treasury_move(
        session,
        actor,
        wallet=wallet,
        amount=amount,
        transaction_type=TransactionType.DEPOSIT,
        idempotency_key=idempotency_key,
        description=description,
    )


def submit_withdrawal(
    session: Session,
    actor: Actor,
    wallet_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str | None = None,
    description: str | None = None,
) -> Submitted:
    """Money leaving the system: from the wallet to the organisation's treasury. Debitors only."""
    wallet = get_debitable_wallet(session, actor, wallet_id)
    return _treasury_move(
        session,
        actor,
        wallet=wallet,
        amount=amount,
        transaction_type=TransactionType.WITHDRAWAL,
        idempotency_key=idempotency_key,
        description=description,
    )


def visible_transactions(actor: Actor) -> Select[tuple[Transaction]]:
    """Transactions the caller created or that touch a wallet they may see; all of their org's for admins."""
    wallet_ids = visible_wallets(actor).with_only_columns(Wallet.id)
    condition = or_(
        Transaction.created_by == actor.user_id,
        Transaction.source_wallet_id.in_(wallet_ids),
        Transaction.destination_wallet_id.in_(wallet_ids),
    )
    if actor.is_org_admin:
        condition = or_(condition, Transaction.organization_id == actor.organization_id)
    return select(Transaction).where(condition)


def get_visible_transaction(
    session: Session, actor: Actor, transaction_id: uuid.UUID, *, for_update: bool = False
) -> Transaction:
    query = visible_transactions(actor).where(Transaction.id == transaction_id)
    if for_update:
        query = query.with_for_update(of=Transaction, key_share=True)
    transaction = session.scalars(query).one_or_none()
    if transaction is None:
        raise NotFound("transaction not found", code="TRANSACTION_NOT_FOUND")
    return transaction


def cancel(session: Session, actor: Actor, transaction_id: uuid.UUID) -> Transaction:
    """PENDING → CANCELLED. The row lock makes this race safely with a worker settling the intent."""
    transaction = get_visible_transaction(session, actor, transaction_id, for_update=True)
    initiator_admin = actor.is_org_admin and transaction.organization_id == actor.organization_id
    if transaction.created_by != actor.user_id and not initiator_admin:
        raise Forbidden("only the initiator or an OWNER/ADMIN may cancel", code="ROLE_REQUIRED")
    if transaction.status != TransactionStatus.PENDING:
        raise Conflict(
            f"only a PENDING transaction can be cancelled; this one is {transaction.status}",
            code="TRANSACTION_NOT_PENDING",
        )
    transaction.status = TransactionStatus.CANCELLED
    transaction.completed_at = session.scalar(select(func.clock_timestamp()))
    session.flush()
    from ledger import p2p  # imported here: ledger.p2p builds on this module

    # A P2P request being paid by this intent fails with it.
    p2p.follow_outcomes(session, [], {transaction.id: p2p.TRANSACTION_CANCELLED}, transaction.completed_at)
    return transaction


@dataclass(frozen=True)
class TransactionFilters:
    status: TransactionStatus | None = None
    type: TransactionType | None = None
    wallet_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def list_transactions(
    session: Session, actor: Actor, filters: TransactionFilters, *, limit: int, cursor: str | None
) -> Page[Transaction]:
    query = visible_transactions(actor)
    if filters.status is not None:
        query = query.where(Transaction.status == filters.status)
    if filters.type is not None:
        query = query.where(Transaction.type == filters.type)
    if filters.wallet_id is not None:
        query = query.where(
            or_(
                Transaction.source_wallet_id == filters.wallet_id,
                Transaction.destination_wallet_id == filters.wallet_id,
            )
        )
    if filters.created_after is not None:
        query = query.where(Transaction.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Transaction.created_at < filters.created_before)
    return paginate(
        session,
        query,
        keys=(Transaction.created_at, Transaction.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def transaction_entries(session: Session, actor: Actor, transaction_id: uuid.UUID) -> list[LedgerEntry]:
    """The transaction's entries on wallets the caller may see: a counterparty's balance stays private."""
    get_visible_transaction(session, actor, transaction_id)
    wallet_ids = visible_wallets(actor).with_only_columns(Wallet.id)
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.transaction_id == transaction_id, LedgerEntry.wallet_id.in_(wallet_ids))
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.direction)
        )
    )
