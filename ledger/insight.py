"""Read-only questions the console asks that no API route does: a transaction's events and webhook
deliveries, a search by reference, the backlog, and the platform's health for operators.

Every query here is bounded (a LIMIT, or an index the answer walks), so a page that asks stays fast
on a large ledger; and every one that names an organisation's objects takes the caller's `Actor`
and reaches only what `ledger.access` and `visible_transactions` let them see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.access import Actor, visible_wallets
from ledger.intents.transfers import get_visible_transaction, visible_transactions
from models import (
    Organization,
    OutboxEvent,
    ReconciliationRun,
    Transaction,
    TransactionStatus,
    Wallet,
    WebhookDelivery,
    WebhookEndpoint,
)

SEARCH_RESULTS_MAX = 50
EVENTS_MAX = 100
PARKED_MAX = 50
ORGANIZATIONS_MAX = 500


def transaction_events(session: Session, actor: Actor, transaction_id: uuid.UUID) -> list[OutboxEvent]:
    """The events written about a transaction the caller may see (404 otherwise), oldest first."""
    get_visible_transaction(session, actor, transaction_id)
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.aggregate_type == "transaction", OutboxEvent.aggregate_id == str(transaction_id))
        .order_by(OutboxEvent.id)
        .limit(EVENTS_MAX)
    )
    return list(session.scalars(query))


def event_deliveries(session: Session, actor: Actor, event_ids: list[uuid.UUID]) -> list[WebhookDelivery]:
    """Deliveries of those events to the caller's organisation's endpoints (OWNER/ADMIN manage
    endpoints, so only they see deliveries; anyone else gets none)."""
    if not event_ids or not actor.is_org_admin:
        return []
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.event_id.in_(event_ids), WebhookDelivery.organization_id == actor.organization_id)
        .order_by(WebhookDelivery.created_at)
        .limit(EVENTS_MAX)
    )
    return list(session.scalars(query))


def find_by_reference(session: Session, actor: Actor, reference: str) -> list[Transaction]:
    """Visible transactions whose Idempotency-Key is `reference` (an id is looked up by the caller)."""
    query = (
        visible_transactions(actor)
        .where(Transaction.organization_id == actor.organization_id, Transaction.idempotency_key == reference)
        .order_by(Transaction.created_at.desc())
        .limit(SEARCH_RESULTS_MAX)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_at: datetime | None
    in_review: int


def backlog(session: Session, actor: Actor) -> Backlog:
    """Intents waiting to settle that debit a wallet the caller may see, and transfers in review:
    both through partial indexes (PENDING by source wallet, IN_REVIEW by organisation)."""
    wallet_ids = visible_wallets(actor).with_only_columns(Wallet.id)
    pending, oldest = session.execute(
        select(func.count(), func.min(Transaction.created_at)).where(
            Transaction.status == TransactionStatus.PENDING, Transaction.source_wallet_id.in_(wallet_ids)
        )
    ).one()
    review = select(func.count()).where(
        Transaction.status == TransactionStatus.IN_REVIEW, Transaction.organization_id == actor.organization_id
    )
    if not actor.is_org_admin:
        review = review.where(Transaction.source_wallet_id.in_(wallet_ids))
    return Backlog(pending=int(pending), oldest_pending_at=oldest, in_review=int(session.execute(review).scalar_one()))


# --- operators ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganizationBacklog:
    organization_id: uuid.UUID
    name: str
    pending: int
    oldest_pending_at: datetime | None


def organizations_backlog(session: Session) -> list[OrganizationBacklog]:
    """Every organisation (up to ORGANIZATIONS_MAX, oldest first) with its PENDING intents, by the
    wallet they debit (the partial index of PENDING intents by source wallet)."""
    pending = (
        select(
            Wallet.organization_id.label("organization_id"),
            func.count().label("pending"),
            func.min(Transaction.created_at).label("oldest"),
        )
        .join(Wallet, Wallet.id == Transaction.source_wallet_id)
        .where(Transaction.status == TransactionStatus.PENDING)
        .group_by(Wallet.organization_id)
        .subquery()
    )
    rows = session.execute(
        select(Organization.id, Organization.name, pending.c.pending, pending.c.oldest)
        .outerjoin(pending, pending.c.organization_id == Organization.id)
        .order_by(Organization.created_at, Organization.id)
        .limit(ORGANIZATIONS_MAX)
    ).all()
    return [OrganizationBacklog(r.id, r.name, int(r.pending or 0), r.oldest) for r in rows]


def parked_intents(session: Session) -> list[Transaction]:
    """Intents parked PENDING (the small partial index ix_transactions_parked), oldest first."""
    query = (
        select(Transaction)
        .where(Transaction.parked_at.is_not(None), Transaction.status == TransactionStatus.PENDING)
        .order_by(Transaction.parked_at)
        .limit(PARKED_MAX)
    )
    return list(session.scalars(query))


def failing_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Webhook endpoints failing since their last success, or disabled for it, of every organisation."""
    query = (
        select(WebhookEndpoint)
        .where((WebhookEndpoint.failing_since.is_not(None)) | (WebhookEndpoint.status == "DISABLED"))
        .order_by(WebhookEndpoint.failing_since.asc().nulls_last())
        .limit(PARKED_MAX)
    )
    return list(session.scalars(query))


def last_runs(session: Session, limit: int = 10) -> list[ReconciliationRun]:
    query = select(ReconciliationRun).order_by(ReconciliationRun.started_at.desc()).limit(limit)
    return list(session.scalars(query))
