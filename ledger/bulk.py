"""Many intents at once: accepting a batch of transfers set-based, and claiming a backlog of PENDING ones.

`submit_transfers` keeps every rule of `ledger.intents.submit_transfer` item by item (idempotency key
first, then same-wallet, source debitable, destination exists) but with a fixed number of statements
for the whole batch instead of about five per item.
An item that breaks a rule gets its own error and claims nothing; the others are written. The caller
commits once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ledger.access import Actor, member_wallet_ids, visible_wallets
from ledger.errors import DomainError, Forbidden, InvalidRequest, NotFound
from ledger.idempotency import request_hash
from ledger.intents import TransferRequest
from models import MemberRole, Transaction, TransactionStatus, TransactionType, Wallet, WalletMember


@dataclass(frozen=True)
class BulkItem:
    request: TransferRequest
    idempotency_key: str

    @property
    def fingerprint(self) -> str:
        # The single-transfer endpoint's fingerprint: a key is the same promise on either endpoint.
        return request_hash("transfer", self.request.fingerprint_body())


@dataclass(frozen=True)
class AcceptedIntent:
    """What the caller needs to answer for one accepted (or replayed) item."""

    id: uuid.UUID
    type: str
    status: str
    failure_reason: str | None
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    idempotency_key: str | None
    created_at: datetime
    completed_at: datetime | None


@dataclass
class ItemOutcome:
    """Exactly one of `intent` (created or replayed) and `error` is set."""

    intent: AcceptedIntent | None = None
    created: bool = False
    error: DomainError | None = None


def _key_reused() -> InvalidRequest:
    return InvalidRequest("this Idempotency-Key was used with a different request", code="IDEMPOTENCY_KEY_REUSED")


def _existing_keys(session: Session, organization_id: uuid.UUID, keys: list[str]) -> dict[str, tuple[str, uuid.UUID]]:
    rows = session.execute(
        text(
            "SELECT key, request_hash, transaction_id FROM idempotency_keys"
            " WHERE organization_id = :org AND key = ANY(CAST(:keys AS text[]))"
        ),
        {"org": organization_id, "keys": keys},
    ).all()
    return {row.key: (row.request_hash, row.transaction_id) for row in rows}


def _refusals(session: Session, actor: Actor, items: dict[int, BulkItem]) -> dict[int, DomainError]:
    """The same checks as a single transfer, in the same order, with three queries for the batch."""
    sources = {i.request.source_wallet_id for i in items.values()}
    destinations = {i.request.destination_wallet_id for i in items.values()}
    visible: dict[uuid.UUID, uuid.UUID] = {
        row.id: row.owner_id
        for row in session.execute(
            visible_wallets(actor).where(Wallet.id.in_(sources)).with_only_columns(Wallet.id, Wallet.owner_id)
        )
    }
    shared = set(visible) - {w for w, owner in visible.items() if owner == actor.user_id}
    contributed = set(
        session.scalars(member_wallet_ids(actor, MemberRole.CONTRIBUTOR).where(WalletMember.wallet_id.in_(shared)))
        if shared
        else []
    )
    existing = set(session.scalars(select(Wallet.id).where(Wallet.id.in_(destinations))))
    refused: dict[int, DomainError] = {}
    for index, item in items.items():
        source, destination = item.request.source_wallet_id, item.request.destination_wallet_id
        if source == destination:
            refused[index] = InvalidRequest("source and destination must be different wallets", code="SAME_WALLET")
        elif source not in visible:
            refused[index] = NotFound("wallet not found", code="WALLET_NOT_FOUND")
        elif visible[source] != actor.user_id and source not in contributed:
            refused[index] = Forbidden(
                "only the wallet's owner or a CONTRIBUTOR may debit it", code="NOT_WALLET_DEBITOR"
            )
        elif destination not in existing:
            refused[index] = NotFound("destination wallet not found", code="DESTINATION_WALLET_NOT_FOUND")
    return refused


_CLAIM_KEYS = text(
    """
    INSERT INTO idempotency_keys (organization_id, key, request_hash, transaction_id)
    SELECT :org, k.key, k.request_hash, k.transaction_id
      FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[]), CAST(:ids AS uuid[]))
           AS k(key, request_hash, transaction_id)
     ORDER BY k.key
    ON CONFLICT (organization_id, key) DO NOTHING
    RETURNING key
    """
)


def _claim_keys(session: Session, actor: Actor, claims: dict[str, tuple[str, uuid.UUID]]) -> set[str]:
    """Claim new keys, in key order so two batches sharing keys cannot deadlock; the ones claimed."""
    if not claims:
        return set()
    keys = list(claims)
    result = session.execute(
        _CLAIM_KEYS,
        {
            "org": actor.organization_id,
            "keys": keys,
            "hashes": [claims[k][0] for k in keys],
            "ids": [claims[k][1] for k in keys],
        },
    )
    return set(result.scalars())


_COPY_INTENTS = (
    "COPY transactions (id, organization_id, created_by, type, status, amount, currency, source_wallet_id,"
    " destination_wallet_id, description, metadata, idempotency_key, created_at) FROM STDIN"
)


def _write_intents(session: Session, actor: Actor, new: dict[uuid.UUID, BulkItem], accepted_at: datetime) -> None:
    """One COPY for every new PENDING intent, instead of an ORM insert per row."""
    if not new:
        return
    connection = session.connection().connection.driver_connection
    assert connection is not None, "the session has a live database connection"
    with connection.cursor() as cursor, cursor.copy(_COPY_INTENTS) as copy:
        for transaction_id, item in new.items():
            request = item.request
            copy.write_row(
                (
                    transaction_id,
                    actor.organization_id,
                    actor.user_id,
                    TransactionType.TRANSFER.value,
                    TransactionStatus.PENDING.value,
                    request.amount,
                    request.currency,
                    request.source_wallet_id,
                    request.destination_wallet_id,
                    request.description,
                    None if request.metadata is None else Jsonb(request.metadata),
                    item.idempotency_key,
                    accepted_at,
                )
            )


def _load_intents(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, AcceptedIntent]:
    if not ids:
        return {}
    rows = session.execute(
        select(
            Transaction.id,
            Transaction.type,
            Transaction.status,
            Transaction.failure_reason,
            Transaction.source_wallet_id,
            Transaction.destination_wallet_id,
            Transaction.amount,
            Transaction.currency,
            Transaction.idempotency_key,
            Transaction.created_at,
            Transaction.completed_at,
        ).where(Transaction.id.in_(ids))
    ).all()
    return {row.id: AcceptedIntent(*row) for row in rows}


def _new_intent(transaction_id: uuid.UUID, item: BulkItem, accepted_at: datetime) -> AcceptedIntent:
    request = item.request
    return AcceptedIntent(
        id=transaction_id,
        type=TransactionType.TRANSFER.value,
        status=TransactionStatus.PENDING.value,
        failure_reason=None,
        source_wallet_id=request.source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        amount=request.amount,
        currency=request.currency,
        idempotency_key=item.idempotency_key,
        created_at=accepted_at,
        completed_at=None,
    )


def submit_transfers(session: Session, actor: Actor, items: Sequence[BulkItem | None]) -> list[ItemOutcome]:
    """Accept many transfers at once. `None` marks an item the caller already rejected (keeps indexes).

    Per item, as for one transfer: a key seen before with the same request replays its transaction,
    with another request is IDEMPOTENCY_KEY_REUSED; otherwise the item is checked and, if it passes,
    claims its key and is written PENDING. Within one batch the first item with a key wins and a
    later duplicate replays it (same request) or is refused (another request).
    """
    outcomes = [ItemOutcome() for _ in items]
    first_with_key: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for index, item in enumerate(items):
        if item is None:
            continue
        if item.idempotency_key in first_with_key:
            duplicates[index] = first_with_key[item.idempotency_key]
        else:
            first_with_key[item.idempotency_key] = index
    primaries = {index: items[index] for index in first_with_key.values()}
    _settle_primaries(session, actor, {i: item for i, item in primaries.items() if item is not None}, outcomes)
    for index, primary in duplicates.items():
        item, first = items[index], items[primary]
        assert item is not None and first is not None
        same = item.fingerprint == first.fingerprint
        source = outcomes[primary]
        outcomes[index] = ItemOutcome(source.intent, False, source.error) if same else ItemOutcome(error=_key_reused())
    return outcomes


def _settle_primaries(session: Session, actor: Actor, items: dict[int, BulkItem], outcomes: list[ItemOutcome]) -> None:
    existing = _existing_keys(session, actor.organization_id, [item.idempotency_key for item in items.values()])
    replays: dict[int, uuid.UUID] = {}
    fresh: dict[int, BulkItem] = {}
    for index, item in items.items():
        if item.idempotency_key not in existing:
            fresh[index] = item
        elif existing[item.idempotency_key][0] == item.fingerprint:
            replays[index] = existing[item.idempotency_key][1]
        else:
            outcomes[index].error = _key_reused()
    for index, error in _refusals(session, actor, fresh).items():
        outcomes[index].error = error
        del fresh[index]
    new_ids = {index: uuid.uuid4() for index in fresh}
    claimed = _claim_keys(
        session, actor, {item.idempotency_key: (item.fingerprint, new_ids[i]) for i, item in fresh.items()}
    )
    raced = {i: item for i, item in fresh.items() if item.idempotency_key not in claimed}
    if raced:  # another request claimed the key since we looked; it has committed, so it is a replay now
        now_existing = _existing_keys(session, actor.organization_id, [item.idempotency_key for item in raced.values()])
        for index, item in raced.items():
            del fresh[index]
            fingerprint, transaction_id = now_existing[item.idempotency_key]
            if fingerprint == item.fingerprint:
                replays[index] = transaction_id
            else:
                outcomes[index].error = _key_reused()
    accepted_at: datetime = session.execute(select(func.now())).scalar_one()
    _write_intents(session, actor, {new_ids[i]: item for i, item in fresh.items()}, accepted_at)
    for index, item in fresh.items():
        outcomes[index].intent, outcomes[index].created = _new_intent(new_ids[index], item, accepted_at), True
    earlier = _load_intents(session, set(replays.values()))
    for index, transaction_id in replays.items():
        outcomes[index].intent = earlier[transaction_id]
