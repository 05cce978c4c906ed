"""Transfer, deposit and withdrawal intents: validated, idempotent, written as durable PENDING rows.

Nothing here moves money; `ledger.settlement.posting` settles the intents later, under row locks.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, any_, func, or_, select
from sqlalchemy.orm import Session

from ledger.access import (
    Actor,
    exists,
    get_debitable_wallet,
    get_visible_wallet,
    not_found,
    refuse_transfer_unless_allowed,
    require_org_admin,
    require_transfer_access,
    system_wallet_refused,
    visible_wallets,
)
from ledger.errors import InvalidRequest
from ledger.idempotency import claim_key, earlier_claim, key_reused, request_hash
from ledger.identity import load_actor, user_gone
from ledger.integrity.audit import Origin
from ledger.integrity.events import transaction_json_sql
from ledger.intents.pending import add_pending_intent
from ledger.notes import note_accepted
from ledger.pagination import Page, paginate
from ledger.wallets import get_or_create_system_wallet
from models import (
    LedgerEntry,
    MemberRole,
    Role,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    WalletType,
    ids,
)


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
    return None if existing_id is None else replayed_transaction(session, actor, existing_id)


def replayed_transaction(session: Session, actor: Actor, transaction_id: uuid.UUID) -> Transaction:
    """The transaction an earlier request with the caller's key made, if the caller may see it.

    Keys are scoped to the organisation, so a colleague may send a key someone else used. One who
    may not see that transaction gets IDEMPOTENCY_KEY_REUSED, the answer to a key used with another
    request: a 404 (what an invisible object answers) would tell them that the first request was
    exactly theirs, this tells them nothing they could not learn by sending any body with that key.
    """
    transaction = session.scalars(visible_transactions(actor).where(Transaction.id == transaction_id)).one_or_none()
    if transaction is None:
        raise key_reused()
    return transaction


def _insert_intent(
    session: Session,
    actor: Actor,
    *,
    transaction_id: uuid.UUID,
    transaction_type: TransactionType,
    request: TransferRequest,
    idempotency_key: str | None,
) -> Transaction:
    return add_pending_intent(
        session,
        actor,
        transaction_id,
        transaction_type,
        amount=request.amount,
        currency=request.currency,
        source_wallet_id=request.source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        idempotency_key=idempotency_key,
        description=request.description,
        metadata_=request.metadata,
    )


def _same_wallet() -> InvalidRequest:
    return InvalidRequest("source and destination must be different wallets", code="SAME_WALLET")


def submit_transfer(
    session: Session, actor: Actor, request: TransferRequest, *, idempotency_key: str | None = None
) -> Submitted:
    """Accept a transfer from a wallet the caller may debit to any wallet, in any organisation.

    For a caller who has an Actor and needs the ORM object (a P2P settle); the API's own transfer
    endpoints use `accept_transfer`, which keeps the same rules in one statement."""
    new_id = ids.new_id()
    earlier = _replay(session, actor, "transfer", request.fingerprint_body(), idempotency_key, new_id)
    if earlier is not None:
        return Submitted(earlier, created=False)
    if request.source_wallet_id == request.destination_wallet_id:
        raise _same_wallet()
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


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """A transfer intent `accept_transfer` just wrote, under the attribute names of `Transaction`:
    what the API shows of it, without building an ORM object on every request."""

    id: uuid.UUID
    organization_id: uuid.UUID
    created_by: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    description: str | None
    metadata_: dict[str, Any] | None
    idempotency_key: str | None
    request_id: str | None
    created_at: datetime
    type: str = TransactionType.TRANSFER.value
    status: str = TransactionStatus.PENDING.value
    failure_reason: str | None = None
    completed_at: datetime | None = None
    settlement_batch_id: uuid.UUID | None = None
    parent_transaction_id: uuid.UUID | None = None
    parked_at: datetime | None = None
    park_reason: str | None = None
    refund_of: uuid.UUID | None = None
    refunded_amount: int = 0
    refunds: tuple[uuid.UUID, ...] = ()
    hold_id: uuid.UUID | None = None
    review_reasons: tuple[str, ...] | None = None
    review_started_at: datetime | None = None
    review_decision: str | None = None
    reviewed_by: uuid.UUID | None = None
    reviewed_at: datetime | None = None
    review_note: str | None = None


@dataclass(frozen=True)
class AcceptedTransfer:
    """A new intent, or (`created` false) the one an earlier request with the same key made."""

    transaction: PendingTransfer | Transaction
    created: bool


TRANSFER_CREATED = "transfer.created"
_ADMIN_ROLES = ", ".join(f"'{role.value}'" for role in (Role.OWNER, Role.ADMIN))

# One round trip for a transfer the API accepts, with the rules of `submit_transfer` (a test holds
# the two together): the caller read fresh (`actor`); their Idempotency-Key claimed first; the
# rules of `access.require_transfer_access` (`source`: no row when the caller may not see it, else
# whether they may debit it; `destination`: in any organisation; neither a SYSTEM wallet); and only
# when the key is theirs and every rule holds, the PENDING intent with its request id and its
# `transfer.created` audit row (the same fields as `events.transaction_data`). Each answer comes
# back, so the caller raises the error `submit_transfer` would, in the same order; a key found taken
# is read afterwards, in a statement of its own (see `idempotency.earlier_claim`). Parameters are
# written for the driver.
_ACCEPT_TRANSFER = f"""WITH actor AS (
        SELECT id, organization_id, role IN ({_ADMIN_ROLES}) AS is_admin FROM users WHERE id = %(user_id)s::uuid
    ),
    source AS (
        SELECT coalesce(w.owner_id = actor.id OR m.role = '{MemberRole.CONTRIBUTOR.value}', false) AS debitable,
               w.type = '{WalletType.SYSTEM.value}' AS is_system
          FROM wallets AS w
          JOIN actor ON actor.organization_id = w.organization_id
          LEFT JOIN wallet_members AS m ON m.wallet_id = w.id AND m.user_id = actor.id
         WHERE w.id = %(source_wallet_id)s::uuid
           AND (actor.is_admin OR w.owner_id = actor.id OR m.wallet_id IS NOT NULL)
    ),
    destination AS (
        SELECT type = '{WalletType.SYSTEM.value}' AS is_system FROM wallets WHERE id = %(destination_wallet_id)s::uuid
    ),
    claimed AS (
        INSERT INTO idempotency_keys (organization_id, key, request_hash, transaction_id)
        SELECT organization_id, %(key)s::text, %(fingerprint)s::text, %(id)s::uuid
          FROM actor
         WHERE %(key)s::text IS NOT NULL
        ON CONFLICT (organization_id, key) DO NOTHING
        RETURNING key
    ),
    intent AS (
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency, source_wallet_id,
                                  destination_wallet_id, description, metadata, idempotency_key, request_id)
        SELECT %(id)s::uuid, organization_id, id, '{TransactionType.TRANSFER.value}',
               '{TransactionStatus.PENDING.value}', %(amount)s::bigint, %(currency)s::text,
               %(source_wallet_id)s::uuid, %(destination_wallet_id)s::uuid, %(description)s::text,
               %(metadata)s::jsonb, %(key)s::text, %(request_id)s::text
          FROM actor
         WHERE %(source_wallet_id)s::uuid <> %(destination_wallet_id)s::uuid
           AND (SELECT debitable FROM source)
           AND EXISTS (SELECT FROM destination)
           AND NOT (SELECT is_system FROM source)
           AND NOT (SELECT is_system FROM destination)
           AND (%(key)s::text IS NULL OR EXISTS (SELECT FROM claimed))
        RETURNING *
    ),
    audited AS (
        INSERT INTO audit_logs (id, organization_id, actor_id, action, target_type, target_id, after, source_address,
                                request_id)
        SELECT uuid_v7(), organization_id, created_by, '{TRANSFER_CREATED}', 'transaction', id::text,
               {transaction_json_sql("intent")},
               %(source_address)s::text, %(audit_request_id)s::text
          FROM intent
    )
    SELECT (SELECT organization_id FROM actor), EXISTS (SELECT FROM claimed), (SELECT debitable FROM source),
           EXISTS (SELECT FROM destination), (SELECT created_at FROM intent), (SELECT is_system FROM source),
           (SELECT is_system FROM destination)
"""


def accept_transfer(
    session: Session,
    user_id: uuid.UUID,
    request: TransferRequest,
    *,
    idempotency_key: str | None,
    origin: Origin,
) -> AcceptedTransfer:
    """What `submit_transfer` and `intent_accepted` do for an API request, in one statement: the
    caller is read from their user id (a user gone since the token was issued is INVALID_TOKEN)."""
    new_id = ids.new_id()
    fingerprint = None if idempotency_key is None else request_hash("transfer", request.fingerprint_body())
    organization_id, claimed, source_debitable, destination_exists, created_at, source_system, destination_system = (
        session.connection()
        .exec_driver_sql(
            _ACCEPT_TRANSFER,
            {
                "user_id": user_id,
                "id": new_id,
                "key": idempotency_key,
                "fingerprint": fingerprint,
                "source_wallet_id": request.source_wallet_id,
                "destination_wallet_id": request.destination_wallet_id,
                "amount": request.amount,
                "currency": request.currency,
                "description": request.description,
                "metadata": None if request.metadata is None else json.dumps(request.metadata),
                "request_id": origin.request_id,
                "source_address": origin.source_address_column,
                "audit_request_id": origin.request_id_column,
            },
        )
        .one()
    )
    if organization_id is None:
        raise user_gone()
    if idempotency_key is not None and not claimed:
        assert fingerprint is not None
        earlier_id = earlier_claim(session, organization_id, idempotency_key, fingerprint)
        earlier = replayed_transaction(session, load_actor(session, user_id), earlier_id)
        return AcceptedTransfer(earlier, created=False)
    if created_at is None:
        if request.source_wallet_id == request.destination_wallet_id:
            raise _same_wallet()
        source_visible = source_debitable is not None
        refuse_transfer_unless_allowed(
            source_visible,
            bool(source_debitable),
            destination_exists,
            source_system=bool(source_system),
            destination_system=bool(destination_system),
            hidden_source=request.source_wallet_id
            if not source_visible and exists(session, Wallet, request.source_wallet_id)
            else None,
        )
        raise AssertionError("every rule held, yet no intent was written")
    note_accepted(session, TransactionType.TRANSFER.value)
    intent = PendingTransfer(
        id=new_id,
        organization_id=organization_id,
        created_by=user_id,
        source_wallet_id=request.source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        amount=request.amount,
        currency=request.currency,
        description=request.description,
        metadata_=request.metadata,
        idempotency_key=idempotency_key,
        request_id=origin.request_id,
        created_at=created_at,
    )
    return AcceptedTransfer(intent, created=True)


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
    new_id = ids.new_id()
    body = {"wallet_id": str(wallet.id), "amount": amount, "description": description}
    earlier = _replay(session, actor, transaction_type.value, body, idempotency_key, new_id)
    if earlier is not None:
        return Submitted(earlier, created=False)
    treasury_id = get_or_create_system_wallet(session, wallet.organization_id, wallet.currency)
    if treasury_id == wallet.id:
        raise InvalidRequest("the treasury cannot deposit into or withdraw from itself", code="SAME_WALLET")
    if wallet.type == WalletType.SYSTEM:  # a clearing wallet: only settlement batches move its money
        raise system_wallet_refused("destination" if transaction_type is TransactionType.DEPOSIT else "source")
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
    # `= ANY(ARRAY(subquery))`, not `IN (subquery)`: the array is computed once and each of the four
    # conditions is then an index scan, OR-ed as bitmaps. An IN (subquery) inside an OR can only be
    # tested row by row, so the whole table was read (make bench console phase, 1,000,000
    # transactions: 175 ms for an owner's newest 50, with an index for every condition).
    wallet_ids = func.array(visible_wallets(actor).with_only_columns(Wallet.id).scalar_subquery())
    condition = or_(
        Transaction.created_by == actor.user_id,
        Transaction.source_wallet_id == any_(wallet_ids),
        Transaction.destination_wallet_id == any_(wallet_ids),
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
        raise not_found(
            session, Transaction, transaction_id, "transaction", "transaction not found", "TRANSACTION_NOT_FOUND"
        )
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
