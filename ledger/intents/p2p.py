"""Peer-to-peer requests: a payee asks a payer, in any organisation, for money.

    REQUESTED --settle (payer)--> SETTLING --transfer COMPLETED--> SETTLED
        |                              \\--transfer FAILED / CANCELLED--> FAILED
        |--decline (payer)--> DECLINED
        \\--cancel (payee)---> CANCELLED

Settling writes one transfer intent through `ledger.intents.transfers`, under the request's row lock, so a
second settle (a retry, or another thread at the same moment) finds the request SETTLING and gets
the same transaction back. The request follows its transaction in the database transaction that
settles it: `ledger.settlement.posting` calls `follow_outcomes`, and cancelling the intent calls it too.
Only the payer sees settle and decline, only the payee cancel; for anyone else the request is 404.

Asking tells the payee nothing about who has an account: a request to an email nobody has is
accepted like any other, with no payer (nobody can settle or decline it; the payee may cancel it),
and the payer's id and organisation show only once the payer has acted on the request (see
`payer_shown`). Otherwise anyone who signs up could test every organisation's emails.

Every change of state writes a `p2p_request.<status>` event (`p2p_request.requested`, `.settling`,
`.settled`, `.failed`, `.declined`, `.cancelled`) to the outbox in the same database transaction.
Events say no more than the API: before the payer acts, the payee's organisation gets one without
the payer, and the payer's organisation one of its own (`record_request_event`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from ledger.access import (
    Actor,
    can_debit,
    get_debitable_wallet,
    get_visible_wallet,
    not_found,
    system_wallet_refused,
)
from ledger.errors import Conflict, Forbidden, InvalidRequest, NotFound
from ledger.idempotency import key_reused
from ledger.identity import find_user_by_email
from ledger.integrity.events import EventFor, record_event, record_events
from ledger.intents.transfers import TransferRequest, submit_transfer
from ledger.pagination import Page, paginate
from models import P2PRequest, P2PStatus, Transaction, User, WalletStatus, WalletType

TRANSACTION_CANCELLED = "TRANSACTION_CANCELLED"
# The metadata key naming the request a transfer pays: settling finds the requests to follow by it.
REQUEST_METADATA_KEY = "p2p_request_id"
# The outbox event each state is announced with.
EVENT_TYPES = {status: f"p2p_request.{status.value.lower()}" for status in P2PStatus}
# What a request's events carry: the request as the API shows it, without the parties' emails.
EVENT_FIELDS = (
    "id",
    "status",
    "payee_id",
    "payee_organization_id",
    "payer_id",
    "payer_organization_id",
    "amount",
    "currency",
    "destination_wallet_id",
    "note",
    "transaction_id",
    "failure_reason",
    "created_at",
    "resolved_at",
)


class Party(StrEnum):
    PAYER = "payer"
    PAYEE = "payee"


@dataclass(frozen=True)
class NewRequest:
    payer_email: str
    amount: int
    currency: str
    destination_wallet_id: uuid.UUID
    note: str | None = None


@dataclass(frozen=True)
class Settled:
    request: P2PRequest
    transaction: Transaction
    created: bool


def request_data(request: Any) -> dict[str, Any]:
    """A request (a P2PRequest, or a row with the same column names) as its events carry it."""
    data = {name: getattr(request, name) for name in EVENT_FIELDS}
    data["status"] = str(P2PStatus(data["status"]))
    return data


def record_request_event(session: Session, request: Any) -> None:
    """Announce the request's current state, in the caller's database transaction.

    Until the payer acts, the payee's organisation is told what the API tells the payee: no payer id
    or organisation, whether or not the email has an account, and an event addressed to it alone (its
    `organization_ids` would name the payer's organisation otherwise). The payer's organisation gets
    its own event, with its user named. Once the payer has acted, one event goes to both."""
    event_type = EVENT_TYPES[P2PStatus(request.status)]
    aggregate = ("p2p_request", request.id)
    data, wallet_ids = request_data(request), [request.destination_wallet_id]
    payee_org, payer_org = request.payee_organization_id, request.payer_organization_id
    if payer_shown(request):
        organization_ids = [o for o in (payee_org, payer_org) if o]
        record_event(
            session,
            event_type,
            aggregate=aggregate,
            data=data,
            wallet_ids=wallet_ids,
            organization_ids=organization_ids,
        )
        return
    events = [EventFor({**data, "payer_id": None, "payer_organization_id": None}, wallet_ids, [payee_org])]
    if payer_org is not None and payer_org != payee_org:
        events.append(EventFor(data, wallet_ids, [payer_org]))
    record_events(session, event_type, aggregate=aggregate, events=events)


def _now(session: Session) -> datetime:
    return session.execute(select(func.clock_timestamp())).scalar_one()


def _check_destination(session: Session, actor: Actor, request: NewRequest) -> None:
    wallet = get_visible_wallet(session, actor, request.destination_wallet_id)
    if not can_debit(session, actor, wallet):
        raise Forbidden("money is requested into a wallet you own or contribute to", code="NOT_OWN_WALLET")
    if wallet.type == WalletType.SYSTEM:
        raise system_wallet_refused("destination")
    if wallet.currency != request.currency:
        raise InvalidRequest(
            f"the destination wallet holds {wallet.currency}, not {request.currency}", code="CURRENCY_MISMATCH"
        )
    if wallet.status != WalletStatus.ACTIVE:
        raise Conflict("the destination wallet is not ACTIVE", code="WALLET_NOT_ACTIVE")


def create_request(session: Session, actor: Actor, request: NewRequest) -> P2PRequest:
    """The caller (payee) asks the user with `payer_email` for money into one of their own wallets."""
    payer = find_user_by_email(session, request.payer_email)
    if payer is not None and payer.id == actor.user_id:
        raise InvalidRequest("you cannot request money from yourself", code="SELF_REQUEST")
    _check_destination(session, actor, request)
    p2p_request = P2PRequest(
        payee_id=actor.user_id,
        payee_organization_id=actor.organization_id,
        payer_email=request.payer_email.strip(),
        payer_id=payer.id if payer else None,
        payer_organization_id=payer.organization_id if payer else None,
        amount=request.amount,
        currency=request.currency,
        destination_wallet_id=request.destination_wallet_id,
        note=request.note,
        status=P2PStatus.REQUESTED,
    )
    session.add(p2p_request)
    session.flush()
    session.refresh(p2p_request)
    record_request_event(session, p2p_request)
    return p2p_request


def _request_not_found(session: Session, request_id: uuid.UUID) -> NotFound:
    return not_found(session, P2PRequest, request_id, "p2p_request", "P2P request not found", "P2P_REQUEST_NOT_FOUND")


def _get_as(session: Session, actor: Actor, request_id: uuid.UUID, *parties: Party) -> P2PRequest:
    """The request, locked, if the caller is one of `parties` to it; NotFound for anyone else."""
    conditions = []
    if Party.PAYER in parties:
        conditions.append(P2PRequest.payer_id == actor.user_id)
    if Party.PAYEE in parties:
        conditions.append(P2PRequest.payee_id == actor.user_id)
    found = session.scalars(
        select(P2PRequest).where(P2PRequest.id == request_id, or_(*conditions)).with_for_update()
    ).one_or_none()
    if found is None:
        raise _request_not_found(session, request_id)
    return found


def get_request(session: Session, actor: Actor, request_id: uuid.UUID) -> P2PRequest:
    request = session.scalars(
        select(P2PRequest).where(
            P2PRequest.id == request_id,
            or_(P2PRequest.payer_id == actor.user_id, P2PRequest.payee_id == actor.user_id),
        )
    ).one_or_none()
    if request is None:
        raise _request_not_found(session, request_id)
    return request


def _not_open(request: P2PRequest) -> Conflict:
    return Conflict(
        f"only a REQUESTED request can change; this one is {request.status}",
        code="P2P_REQUEST_NOT_OPEN",
        details={"status": str(request.status)},
    )


def settle(
    session: Session,
    actor: Actor,
    request_id: uuid.UUID,
    *,
    source_wallet_id: uuid.UUID,
    idempotency_key: str | None = None,
) -> Settled:
    """The payer accepts: one transfer intent from their wallet to the payee's. Safe to repeat."""
    request = _get_as(session, actor, request_id, Party.PAYER)
    if request.transaction_id is not None:
        return _replay(session, request, source_wallet_id)
    if request.status != P2PStatus.REQUESTED:
        raise _not_open(request)
    source = get_debitable_wallet(session, actor, source_wallet_id)
    if source.type == WalletType.SYSTEM:
        raise system_wallet_refused("source")
    if source.currency != request.currency:
        raise InvalidRequest(
            f"the source wallet holds {source.currency}, the request is in {request.currency}",
            code="CURRENCY_MISMATCH",
        )
    transfer = TransferRequest(
        source_wallet_id=source_wallet_id,
        destination_wallet_id=request.destination_wallet_id,
        amount=request.amount,
        currency=request.currency,
        description=request.note,
        metadata={REQUEST_METADATA_KEY: str(request.id)},
    )
    submitted = submit_transfer(session, actor, transfer, idempotency_key=idempotency_key)
    if not submitted.created:
        # The key's first use was another request: its fingerprint names that request, not this one.
        raise key_reused()
    request.status = P2PStatus.SETTLING
    request.transaction_id = submitted.transaction.id
    session.flush()
    record_request_event(session, request)
    return Settled(request, submitted.transaction, created=True)


def _replay(session: Session, request: P2PRequest, source_wallet_id: uuid.UUID) -> Settled:
    transaction = session.get_one(Transaction, request.transaction_id)
    if transaction.source_wallet_id != source_wallet_id:
        raise Conflict(
            "this request is already being paid from another wallet",
            code="P2P_REQUEST_ALREADY_SETTLED",
            details={"status": str(request.status), "transaction_id": str(transaction.id)},
        )
    return Settled(request, transaction, created=False)


def _resolve(session: Session, request: P2PRequest, status: P2PStatus) -> P2PRequest:
    if request.status != P2PStatus.REQUESTED:
        raise _not_open(request)
    request.status = status
    request.resolved_at = _now(session)
    session.flush()
    record_request_event(session, request)
    return request


def decline(session: Session, actor: Actor, request_id: uuid.UUID) -> P2PRequest:
    return _resolve(session, _get_as(session, actor, request_id, Party.PAYER), P2PStatus.DECLINED)


def cancel(session: Session, actor: Actor, request_id: uuid.UUID) -> P2PRequest:
    return _resolve(session, _get_as(session, actor, request_id, Party.PAYEE), P2PStatus.CANCELLED)


def list_requests(
    session: Session,
    actor: Actor,
    *,
    role: Party | None,
    status: P2PStatus | None,
    limit: int,
    cursor: str | None,
) -> Page[P2PRequest]:
    if role is Party.PAYER:
        query = select(P2PRequest).where(P2PRequest.payer_id == actor.user_id)
    elif role is Party.PAYEE:
        query = select(P2PRequest).where(P2PRequest.payee_id == actor.user_id)
    else:
        query = select(P2PRequest).where(
            or_(P2PRequest.payer_id == actor.user_id, P2PRequest.payee_id == actor.user_id)
        )
    if status is not None:
        query = query.where(P2PRequest.status == status)
    return paginate(
        session,
        query,
        keys=(P2PRequest.created_at, P2PRequest.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


# Statuses only the payer's own action leads to: from then on the payee may know who the payer is.
PAYER_ACTED = frozenset({P2PStatus.SETTLING, P2PStatus.SETTLED, P2PStatus.FAILED, P2PStatus.DECLINED})


def payer_shown(request: Any) -> bool:
    """Whether the request's views and the payee's events show its payer's id and organisation (see
    the module's doc). `request`: a P2PRequest, or a row with its columns."""
    return P2PStatus(request.status) in PAYER_ACTED


def party_emails(session: Session, requests: Iterable[P2PRequest]) -> dict[uuid.UUID, str]:
    ids = {u for r in requests for u in (r.payer_id, r.payee_id) if u is not None}
    if not ids:
        return {}
    return {row.id: row.email for row in session.execute(select(User.id, User.email).where(User.id.in_(ids)))}


_FOLLOW = text(
    """
    UPDATE p2p_requests AS r
       SET status = v.status, failure_reason = v.reason, resolved_at = coalesce(:at, clock_timestamp()),
           updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]))
           AS v(id, status, reason)
     WHERE r.transaction_id = v.id AND r.status = 'SETTLING'
    RETURNING r.id, r.status, r.payee_id, r.payee_organization_id, r.payer_id, r.payer_organization_id,
              r.amount, r.currency, r.destination_wallet_id, r.note, r.transaction_id, r.failure_reason,
              r.created_at, r.resolved_at
    """
)


def follow_outcomes(
    session: Session, completed: Sequence[uuid.UUID], failed: Mapping[uuid.UUID, str], at: datetime | None
) -> None:
    """Requests whose transactions just reached a final status follow them: SETTLED or FAILED.

    Runs in the caller's database transaction, the one that writes those final statuses, and writes
    each changed request's `p2p_request.settled` / `.failed` event in it too.
    """
    ids = [*completed, *failed]
    if not ids:
        return
    statuses = [P2PStatus.SETTLED.value] * len(completed) + [P2PStatus.FAILED.value] * len(failed)
    reasons: list[str | None] = [None] * len(completed) + [str(reason) for reason in failed.values()]
    changed = session.execute(_FOLLOW, {"ids": ids, "statuses": statuses, "reasons": reasons, "at": at}).all()
    position = {transaction_id: index for index, transaction_id in enumerate(ids)}
    for request in sorted(changed, key=lambda row: position[row.transaction_id]):  # in intent order
        record_request_event(session, request)
