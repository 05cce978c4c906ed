"""Risk controls: each organisation's limits on money leaving its wallets.

Three limits, each optional (models/risk.py): the largest single outgoing transfer, a wallet's
outgoing total per UTC day, and a wallet's outgoing transfers in any 60 seconds. Outgoing means
TRANSFER and WITHDRAWAL intents whose source is the wallet; SYSTEM wallets and refunds are exempt.

The hook into `ledger.settlement.posting.settle_transfers`, after the wallets are locked (so the usage read
sees every earlier batch of those wallets, committed):

    budget = load_budget(session, intents, wallets, owners)  # limits and usage: two queries at most
    plan   = plan_postings(intents, wallets, budget)        # pure: each intent that would complete
                                                            #   is admitted and charged, or refused
    record_breaches(session, budget)                        # one audit row per RISK_LIMIT failure

Intents of one batch are charged in order, so they count against each other as separate batches
would. Only intents that complete are charged; one that fails for another reason costs nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.orm import Session

from ledger.access import Actor, require_org_admin
from ledger.integrity import audit
from models import Transaction, TransactionStatus, TransactionType, WalletType
from models.risk import RISK_LIMIT_NAMES, RiskLimits

if TYPE_CHECKING:
    from ledger.settlement.plan import Intent, WalletState

OUTGOING_TYPES = (TransactionType.TRANSFER, TransactionType.WITHDRAWAL)
# A refund is neither counted nor charged: it only sends back, to where it came from, what came
# (ledger/intents/refunds.py), so it opens no way out that the limits guard.
_REFUND = TransactionType.REFUND.value
# Inline, not bound: the partial index ix_transactions_outgoing_completed (migration 0005) has this
# predicate, and Postgres only matches it to constants, also under a generic prepared-statement plan.
_COMPLETED_OUTGOING = text(
    f"transactions.status = '{TransactionStatus.COMPLETED}'"
    f" AND transactions.type IN ({', '.join(repr(str(t)) for t in OUTGOING_TYPES)})"
)
RATE_WINDOW = timedelta(seconds=60)
RISK_ACTOR_LABEL = "system:risk"


@dataclass(frozen=True)
class Limits:
    """One organisation's limits; None means no limit."""

    transfer_amount_max: int | None = None
    daily_outgoing_max_per_wallet: int | None = None
    transfers_per_minute_max_per_wallet: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in RISK_LIMIT_NAMES)

    @property
    def needs_usage(self) -> bool:
        return self.daily_outgoing_max_per_wallet is not None or self.transfers_per_minute_max_per_wallet is not None


@dataclass
class Usage:
    """A wallet's COMPLETED outgoing transfers: today's total (UTC) and the count in the last 60 s."""

    outgoing_today: int = 0
    transfers_last_minute: int = 0


@dataclass(frozen=True)
class Breach:
    """Why an intent was refused: which limit, its value, and what the intent would have reached."""

    intent_id: uuid.UUID
    organization_id: uuid.UUID
    source_wallet_id: uuid.UUID
    amount: int
    limit: str
    limit_value: int
    attempted: int

    def audit_after(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "limit_value": self.limit_value,
            "attempted": self.attempted,
            "amount": self.amount,
            "source_wallet_id": self.source_wallet_id,
        }


@dataclass(frozen=True)
class WalletRisk:
    organization_id: uuid.UUID
    limits: Limits


@dataclass
class RiskBudget:
    """The limits and usage of a batch's source wallets, charged intent by intent. Pure.

    A wallet absent from `wallets` has no limit (no limits configured, or a SYSTEM wallet).
    """

    wallets: dict[uuid.UUID, WalletRisk] = field(default_factory=dict)
    usage: dict[uuid.UUID, Usage] = field(default_factory=dict)
    breaches: dict[uuid.UUID, Breach] = field(default_factory=dict)

    def admit(self, intent: Intent) -> bool:
        """True, and the intent is charged, when it stays within its wallet's limits; else False,
        and the breach is kept for the audit trail."""
        risk = self.wallets.get(intent.source_wallet_id)
        if risk is None or intent.type == _REFUND:
            return True
        usage = self.usage.setdefault(intent.source_wallet_id, Usage())
        found = breach(risk.limits, usage, intent.amount)
        if found is not None:
            limit, limit_value, attempted = found
            self.breaches[intent.id] = Breach(
                intent.id, risk.organization_id, intent.source_wallet_id, intent.amount, limit, limit_value, attempted
            )
            return False
        usage.outgoing_today += intent.amount
        usage.transfers_last_minute += 1
        return True


def breach(limits: Limits, usage: Usage, amount: int) -> tuple[str, int, int] | None:
    """The first limit an outgoing `amount` would break, as (name, value, attempted), or None."""
    if limits.transfer_amount_max is not None and amount > limits.transfer_amount_max:
        return "transfer_amount_max", limits.transfer_amount_max, amount
    daily_max = limits.daily_outgoing_max_per_wallet
    if daily_max is not None and usage.outgoing_today + amount > daily_max:
        return "daily_outgoing_max_per_wallet", daily_max, usage.outgoing_today + amount
    rate_max = limits.transfers_per_minute_max_per_wallet
    if rate_max is not None and usage.transfers_last_minute + 1 > rate_max:
        return "transfers_per_minute_max_per_wallet", rate_max, usage.transfers_last_minute + 1
    return None


def window_starts(now: datetime) -> tuple[datetime, datetime]:
    """(start of the current UTC day, start of the last 60 s) for an aware `now`."""
    assert now.tzinfo is not None, "times are timezone-aware"
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day_start, now - RATE_WINDOW


# --- reading limits and usage ---------------------------------------------------------------------


def _any(ids: Iterable[uuid.UUID]) -> Any:
    """`= ANY(:ids)` with one array parameter, however many wallets a batch has (up to 1,000)."""
    return any_(bindparam(None, sorted(ids), type_=ARRAY(UUID(as_uuid=True))))


def _limits(row: RiskLimits | Any) -> Limits:
    return Limits(*(getattr(row, name) for name in RISK_LIMIT_NAMES))


def load_budget(
    session: Session,
    intents: Iterable[Intent],
    wallets: dict[uuid.UUID, WalletState],
    owners: Mapping[uuid.UUID, tuple[uuid.UUID, str]],
) -> RiskBudget:
    """The budget of every non-SYSTEM source wallet whose organisation has a limit.

    `owners` is each wallet's (organisation, currency). Call it after the wallets are locked: the
    usage then includes every earlier batch of theirs.
    """
    sources = {i.source_wallet_id for i in intents if wallets[i.source_wallet_id].type != WalletType.SYSTEM}
    if not sources:
        return RiskBudget()
    organizations = {owners[wallet_id][0] for wallet_id in sources}
    rows = session.execute(
        select(RiskLimits.organization_id, *(getattr(RiskLimits, name) for name in RISK_LIMIT_NAMES)).where(
            RiskLimits.organization_id == _any(organizations)
        )
    ).all()
    limits = {row.organization_id: _limits(row) for row in rows if _limits(row).any}
    if not limits:
        return RiskBudget()
    limited = {
        wallet_id: WalletRisk(owners[wallet_id][0], limits[owners[wallet_id][0]])
        for wallet_id in sources
        if owners[wallet_id][0] in limits
    }
    counted = [wallet_id for wallet_id, r in limited.items() if r.limits.needs_usage]
    return RiskBudget(wallets=limited, usage=_load_usage(session, counted))


def _load_usage(session: Session, wallet_ids: list[uuid.UUID]) -> dict[uuid.UUID, Usage]:
    """Each wallet's COMPLETED outgoing total today and count in the last 60 s: one grouped query."""
    if not wallet_ids:
        return {}
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    day_start, minute_start = window_starts(now)
    rows = session.execute(
        select(
            Transaction.source_wallet_id,
            func.coalesce(func.sum(Transaction.amount).filter(Transaction.completed_at >= day_start), 0),
            func.count().filter(Transaction.completed_at > minute_start),
        )
        .where(
            Transaction.source_wallet_id == _any(wallet_ids),
            _COMPLETED_OUTGOING,
            Transaction.completed_at >= min(day_start, minute_start),
        )
        .group_by(Transaction.source_wallet_id)
    ).all()
    return {wallet_id: Usage(int(total), int(count)) for wallet_id, total, count in rows}


def record_breaches(session: Session, budget: RiskBudget) -> None:
    """One audit row per refused intent, in the settling transaction, for the source's organisation."""
    for found in budget.breaches.values():
        audit.record(
            session,
            None,
            "transaction.risk_limit",
            target=("transaction", found.intent_id),
            after=found.audit_after(),
            organization_id=found.organization_id,
            actor_label=RISK_ACTOR_LABEL,
        )


# --- configuring limits ---------------------------------------------------------------------------


def get_limits(session: Session, organization_id: uuid.UUID) -> RiskLimits | None:
    return session.get(RiskLimits, organization_id)


def limits_view(organization_id: uuid.UUID, row: RiskLimits | None) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        **{name: getattr(row, name) if row else None for name in RISK_LIMIT_NAMES},
        "updated_at": row.updated_at if row else None,
        "updated_by": row.updated_by if row else None,
    }


def set_limits(
    session: Session, actor: Actor, limits: Limits
) -> tuple[RiskLimits, dict[str, int | None], dict[str, int | None]]:
    """OWNER/ADMIN replace their organisation's limits. Answers the row, and the limits before and after."""
    require_org_admin(actor)
    # Create the row if need be, then lock it: two first PUTs at once both succeed, one after the other.
    session.execute(insert(RiskLimits).values(organization_id=actor.organization_id).on_conflict_do_nothing())
    row = session.get(RiskLimits, actor.organization_id, with_for_update=True, populate_existing=True)
    assert row is not None, "the row was just created or already existed"
    before = {name: getattr(row, name) for name in RISK_LIMIT_NAMES}
    for name in RISK_LIMIT_NAMES:
        setattr(row, name, getattr(limits, name))
    row.updated_by = actor.user_id
    session.flush()
    session.refresh(row)
    return row, before, {name: getattr(row, name) for name in RISK_LIMIT_NAMES}
