"""Holds (two-phase transfers): intake of holds and captures, voids, expiry, reads.

A hold reserves funds on its source wallet (`held_amount`) and later moves part or all of them to
its destination in captures. Nothing here moves money or reserves it at intake: a hold is accepted
as a PENDING `HOLD` transaction (its id is the hold's id) and a capture as a PENDING `CAPTURE`
transaction, and the settlement engine settles both in their wallet's order, under the wallet's row
lock (`ledger.settlement.posting`, `ledger.settlement.hold_outcomes`).

Exactly one of capture-to-the-end, void and expiry ends a hold, whatever races, because each
decides under the hold's row lock:
- a capture is accepted only while the hold is HELD and not past `expires_at`, and only for what
  no other capture has already reserved (`reserved_amount`): captures never exceed the hold;
- a void or an expiry locks the hold, then its source wallet, releases what remains and ends it
  (expiry, many due holds at once: `ledger.settlement.expiry`);
- a capture that settles after its hold ended fails HOLD_NOT_ACTIVE (or HOLD_EXPIRED).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.orm import Session

from ledger import monitors
from ledger.access import Actor, can_debit, not_found, require_transfer_access, visible_wallets
from ledger.errors import Conflict, Forbidden, InvalidRequest, NotFound
from ledger.idempotency import claim_key, request_hash
from ledger.intents.pending import add_pending_intent
from ledger.intents.transfers import Submitted, replayed_transaction
from ledger.pagination import Page, paginate
from ledger.settlement.hold_outcomes import record_hold_event
from models import Hold, HoldStatus, Transaction, TransactionType, Wallet, ids
from models.hold import HOLD_EXPIRES_IN_SECONDS_DEFAULT

VOIDED = "hold.voided"


@dataclass(frozen=True)
class HoldRequest:
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    expires_in: int = HOLD_EXPIRES_IN_SECONDS_DEFAULT
    description: str | None = None
    metadata: dict[str, Any] | None = field(default=None)

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "source_wallet_id": str(self.source_wallet_id),
            "destination_wallet_id": str(self.destination_wallet_id),
            "amount": self.amount,
            "currency": self.currency,
            "expires_in": self.expires_in,
            "description": self.description,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class AcceptedHold:
    hold: Hold
    submitted: Submitted  # its HOLD transaction (`created` false: an Idempotency-Key replay)


def _replayed(session: Session, actor: Actor, operation: str, body: dict[str, Any], key: str | None) -> Any:
    """(new id, the earlier transaction or None): the key claimed for a new id, or what it made before."""
    new_id = ids.new_id()
    if key is None:
        return new_id, None
    earlier_id = claim_key(session, actor.organization_id, key, request_hash(operation, body), new_id)
    return new_id, None if earlier_id is None else replayed_transaction(session, actor, earlier_id)


def submit_hold(
    session: Session, actor: Actor, request: HoldRequest, *, idempotency_key: str | None = None
) -> AcceptedHold:
    """Accept a hold from a wallet the caller may debit (the rights of a transfer)."""
    new_id, earlier = _replayed(session, actor, "hold", request.fingerprint_body(), idempotency_key)
    if earlier is not None:
        return AcceptedHold(session.get_one(Hold, earlier.id), Submitted(earlier, created=False))
    if request.source_wallet_id == request.destination_wallet_id:
        raise InvalidRequest("source and destination must be different wallets", code="SAME_WALLET")
    require_transfer_access(session, actor, request.source_wallet_id, request.destination_wallet_id)
    hold = Hold(
        id=new_id,
        organization_id=actor.organization_id,
        created_by=actor.user_id,
        status=HoldStatus.PENDING,
        amount=request.amount,
        currency=request.currency,
        source_wallet_id=request.source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        expires_in=request.expires_in,
        description=request.description,
        metadata_=request.metadata,
    )
    session.add(hold)
    session.flush()
    intent = _add_intent(
        session,
        actor,
        new_id,
        TransactionType.HOLD,
        hold,
        request.amount,
        idempotency_key,
        description=request.description,
        metadata_=request.metadata,
    )
    return AcceptedHold(hold, Submitted(intent, created=True))


def _add_intent(
    session: Session,
    actor: Actor,
    intent_id: uuid.UUID,
    kind: TransactionType,
    hold: Hold,
    amount: int,
    key: str | None,
    **details: Any,
) -> Transaction:
    """The hold's own intent (HOLD) or one of its captures, along the hold's wallets."""
    return add_pending_intent(
        session,
        actor,
        intent_id,
        kind,
        amount=amount,
        currency=hold.currency,
        source_wallet_id=hold.source_wallet_id,
        destination_wallet_id=hold.destination_wallet_id,
        idempotency_key=key,
        hold_id=None if kind is TransactionType.HOLD else hold.id,
        **details,
    )


def hold_ended(hold: Hold) -> Conflict:
    if hold.status == HoldStatus.EXPIRED:
        return Conflict("the hold has expired", code="HOLD_EXPIRED", details={"status": str(hold.status)})
    return Conflict(
        f"the hold is {hold.status}; only a HELD hold can be captured or voided",
        code="HOLD_NOT_ACTIVE",
        details={"status": str(hold.status)},
    )


def submit_capture(
    session: Session,
    actor: Actor,
    hold_id: uuid.UUID,
    *,
    amount: int | None = None,
    final: bool = False,
    idempotency_key: str | None = None,
) -> Submitted:
    """Accept a capture of part (or, by default, all that remains) of a HELD hold.

    Decided under the hold's row lock: what this capture takes is reserved on the hold at once
    (`reserved_amount`), so two captures racing can never together take more than the hold."""
    body = {"hold_id": str(hold_id), "amount": amount, "final": final}
    new_id, earlier = _replayed(session, actor, "capture", body, idempotency_key)
    if earlier is not None:
        return Submitted(earlier, created=False)
    hold = _locked_hold(session, actor, hold_id)
    _require_hold_rights(session, actor, hold)
    now = session.execute(select(func.clock_timestamp())).scalar_one()
    if hold.status == HoldStatus.HELD and hold.expires_at is not None and hold.expires_at <= now:
        raise Conflict("the hold has expired", code="HOLD_EXPIRED", details={"status": str(hold.status)})
    if hold.status != HoldStatus.HELD or hold.final_capture_id is not None:
        raise hold_ended(hold)
    free = hold.amount - hold.captured_amount - hold.reserved_amount
    amount = free if amount is None else amount
    if amount <= 0 or amount > free:
        raise InvalidRequest(
            "a capture cannot exceed what remains of the hold (less captures on their way)",
            code="CAPTURE_EXCEEDS_HOLD",
            details={"capturable_amount": free},
        )
    hold.reserved_amount += amount
    if final:
        hold.final_capture_id = new_id
    intent = _add_intent(session, actor, new_id, TransactionType.CAPTURE, hold, amount, idempotency_key)
    return Submitted(intent, created=True)


def void(session: Session, actor: Actor, hold_id: uuid.UUID) -> Hold:
    """HELD → VOIDED: what remains is released at once. A VOIDED hold answers as it is (a retry)."""
    hold = _locked_hold(session, actor, hold_id)
    _require_hold_rights(session, actor, hold)
    if hold.status == HoldStatus.VOIDED:
        return hold
    if hold.status != HoldStatus.HELD:
        raise hold_ended(hold)
    released = _end(session, hold, HoldStatus.VOIDED)
    record_hold_event(session, VOIDED, hold)
    monitors.released(session, *released, hold_id=hold.id)
    return hold


def _end(session: Session, hold: Hold, status: HoldStatus) -> tuple[uuid.UUID, int, int]:
    """Release what remains of the hold on its source wallet (locked here, after the hold) and end it.
    Returns the wallet, its balance and its held amount after the release (for its monitors)."""
    session.execute(select(Wallet.id).where(Wallet.id == hold.source_wallet_id).with_for_update(key_share=True)).all()
    remaining = hold.amount - hold.captured_amount
    balance, held = session.execute(
        text(
            "UPDATE wallets SET held_amount = held_amount - :amount, updated_at = now() WHERE id = :id"
            " RETURNING balance, held_amount"
        ),
        {"amount": remaining, "id": hold.source_wallet_id},
    ).one()
    hold.status = status
    hold.reserved_amount = 0  # captures on their way find the hold ended and fail
    hold.ended_at = session.execute(select(func.clock_timestamp())).scalar_one()
    session.flush()
    return hold.source_wallet_id, balance, held


def visible_holds(actor: Actor) -> Select[tuple[Hold]]:
    """The holds the caller may see: as for transactions, those they created or that touch a wallet
    they may see, and all of their organisation's for admins."""
    wallet_ids = visible_wallets(actor).with_only_columns(Wallet.id)
    condition = or_(
        Hold.created_by == actor.user_id,
        Hold.source_wallet_id.in_(wallet_ids),
        Hold.destination_wallet_id.in_(wallet_ids),
    )
    if actor.is_org_admin:
        condition = or_(condition, Hold.organization_id == actor.organization_id)
    return select(Hold).where(condition)


def hold_not_found(session: Session, hold_id: uuid.UUID) -> NotFound:
    return not_found(session, Hold, hold_id, "hold", "hold not found", "HOLD_NOT_FOUND")


def get_visible_hold(session: Session, actor: Actor, hold_id: uuid.UUID) -> Hold:
    hold = session.scalars(visible_holds(actor).where(Hold.id == hold_id)).one_or_none()
    if hold is None:
        raise hold_not_found(session, hold_id)
    return hold


def _locked_hold(session: Session, actor: Actor, hold_id: uuid.UUID) -> Hold:
    query = (
        visible_holds(actor)
        .where(Hold.id == hold_id)
        .with_for_update(of=Hold, key_share=True)
        .execution_options(populate_existing=True)  # the row as it stands under the lock
    )
    hold = session.scalars(query).one_or_none()
    if hold is None:
        raise hold_not_found(session, hold_id)
    return hold


def _require_hold_rights(session: Session, actor: Actor, hold: Hold) -> None:
    """Whoever may debit its source (the payer) or its destination (the payee) may capture or void."""
    for wallet_id in (hold.source_wallet_id, hold.destination_wallet_id):
        wallet = session.scalars(visible_wallets(actor).where(Wallet.id == wallet_id)).one_or_none()
        if wallet is not None and can_debit(session, actor, wallet):
            return
    raise Forbidden("only those who may debit the hold's source or destination may act on it", code="ROLE_REQUIRED")


def capture_ids(session: Session, hold_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each hold's CAPTURE transactions, oldest first."""
    captures: dict[uuid.UUID, list[uuid.UUID]] = {h: [] for h in hold_ids}
    if hold_ids:
        rows = session.execute(
            select(Transaction.hold_id, Transaction.id)
            .where(Transaction.hold_id.in_(list(hold_ids)))
            .order_by(Transaction.created_at, Transaction.id)
        )
        for hold_id, transaction_id in rows:
            captures[hold_id].append(transaction_id)
    return captures


@dataclass(frozen=True)
class HoldFilters:
    status: HoldStatus | None = None
    wallet_id: uuid.UUID | None = None


def list_holds(session: Session, actor: Actor, filters: HoldFilters, *, limit: int, cursor: str | None) -> Page[Hold]:
    query = visible_holds(actor)
    if filters.status is not None:
        query = query.where(Hold.status == filters.status)
    if filters.wallet_id is not None:
        query = query.where(
            or_(Hold.source_wallet_id == filters.wallet_id, Hold.destination_wallet_id == filters.wallet_id)
        )
    return paginate(
        session, query, keys=(Hold.created_at, Hold.id), kinds=(datetime, uuid.UUID), limit=limit, cursor=cursor
    )
