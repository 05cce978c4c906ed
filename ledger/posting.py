"""Settling PENDING intents into the double-entry ledger, many at a time, in one database transaction.

    claim intents (FOR UPDATE SKIP LOCKED)  →  lock their wallets in id order (FOR UPDATE)
    →  plan every posting in memory, in intent order (pure)  →  write entries, balances, outcomes.

Each intent still succeeds or fails on its own: it sees the balances the intents before it left,
gets its own balance_after and wallet versions, and a failure writes no entry. The caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import QueryableAttribute, Session

from ledger import events, risk
from models import (
    Direction,
    FailureReason,
    Transaction,
    TransactionStatus,
    Wallet,
    WalletStatus,
    WalletType,
)

BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class Intent:
    id: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str


@dataclass
class WalletState:
    """A locked wallet's balance and version as the plan moves through the batch."""

    id: uuid.UUID
    type: str
    status: str
    currency: str
    balance: int
    version: int
    touched: bool = False

    def may_go_negative(self) -> bool:
        return self.type == WalletType.SYSTEM

    def post(self, delta: int) -> tuple[int, int]:
        self.balance += delta
        self.version += 1
        self.touched = True
        assert -BIGINT_MAX <= self.balance <= BIGINT_MAX, "balance outside BIGINT"
        return self.balance, self.version


@dataclass(frozen=True)
class PlannedEntry:
    wallet_id: uuid.UUID
    transaction_id: uuid.UUID
    direction: Direction
    amount: int
    balance_after: int
    wallet_version: int


@dataclass
class Plan:
    completed: list[uuid.UUID] = field(default_factory=list)
    failed: dict[uuid.UUID, FailureReason] = field(default_factory=dict)
    entries: list[PlannedEntry] = field(default_factory=list)


def refusal(intent: Intent, source: WalletState, destination: WalletState) -> FailureReason | None:
    """Why the intent cannot post against these balances, or None when it can."""
    if source.status != WalletStatus.ACTIVE or destination.status != WalletStatus.ACTIVE:
        return FailureReason.WALLET_NOT_ACTIVE
    if not (intent.currency == source.currency == destination.currency):
        return FailureReason.CURRENCY_MISMATCH
    if not source.may_go_negative() and source.balance < intent.amount:
        return FailureReason.INSUFFICIENT_FUNDS
    return None


def plan_postings(
    intents: Iterable[Intent], wallets: dict[uuid.UUID, WalletState], budget: risk.RiskBudget | None = None
) -> Plan:
    """Apply intents in order against in-memory wallet states. Pure: no database.

    With a risk budget, an intent that would otherwise complete is charged to it, or fails RISK_LIMIT.
    """
    plan = Plan()
    for intent in intents:
        source, destination = wallets[intent.source_wallet_id], wallets[intent.destination_wallet_id]
        reason = refusal(intent, source, destination)
        if reason is None and budget is not None and not budget.admit(intent):
            reason = FailureReason.RISK_LIMIT
        if reason is not None:
            plan.failed[intent.id] = reason
            continue
        debit_after, debit_version = source.post(-intent.amount)
        credit_after, credit_version = destination.post(intent.amount)
        plan.entries.append(
            PlannedEntry(source.id, intent.id, Direction.DEBIT, intent.amount, debit_after, debit_version)
        )
        plan.entries.append(
            PlannedEntry(destination.id, intent.id, Direction.CREDIT, intent.amount, credit_after, credit_version)
        )
        plan.completed.append(intent.id)
    _assert_balanced(plan)
    return plan


def _assert_balanced(plan: Plan) -> None:
    debits = sum(e.amount for e in plan.entries if e.direction is Direction.DEBIT)
    credits = sum(e.amount for e in plan.entries if e.direction is Direction.CREDIT)
    assert debits == credits, f"unbalanced plan: debits {debits} != credits {credits}"
    assert len(plan.entries) == 2 * len(plan.completed), "every completed intent posts exactly two entries"


@dataclass(frozen=True)
class SettleOutcome:
    completed: int
    failed: int
    skipped: int


def any_id(column: QueryableAttribute[uuid.UUID], ids: Iterable[uuid.UUID]) -> ColumnElement[bool]:
    """`column = ANY(:ids)` with one array parameter. `in_` expands to one bind parameter per id, and
    for a batch (1,000 intents, up to 2,000 wallets) building and parsing that costs more than the query."""
    return column == any_(bindparam(None, list(ids), type_=ARRAY(UUID(as_uuid=True))))


def claim_pending(session: Session, transaction_ids: Sequence[uuid.UUID]) -> list[Intent]:
    """Lock the given intents that are still PENDING; skip those another worker holds right now.

    A skipped intent is being settled by that worker; if it crashes, its transaction rolls back and
    the message is redelivered or the sweep re-enqueues it. Order: first accepted, first applied.
    """
    rows = session.execute(
        select(
            Transaction.id,
            Transaction.source_wallet_id,
            Transaction.destination_wallet_id,
            Transaction.amount,
            Transaction.currency,
        )
        .where(any_id(Transaction.id, transaction_ids), Transaction.status == TransactionStatus.PENDING)
        .order_by(Transaction.created_at, Transaction.id)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    return [Intent(*row) for row in rows]


def lock_wallets(session: Session, wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, WalletState]:
    """Row-lock every wallet in one global order (by id), so two batches can never deadlock."""
    rows = session.execute(
        select(Wallet.id, Wallet.type, Wallet.status, Wallet.currency, Wallet.balance, Wallet.version)
        .where(any_id(Wallet.id, set(wallet_ids)))
        .order_by(Wallet.id)
        # NO KEY UPDATE, not UPDATE: only balance and version change, so the KEY SHARE locks that
        # foreign-key checks take (an API inserting an intent naming two wallets, in its own order)
        # never wait on a batch; with FOR UPDATE the two deadlock.
        .with_for_update(key_share=True)
    ).all()
    return {row.id: WalletState(*row) for row in rows}


def settle_transfers(session: Session, transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    """Settle whichever of these intents are still PENDING. Safe to run twice, or twice at once."""
    intents = claim_pending(session, transaction_ids)
    if not intents:
        return SettleOutcome(completed=0, failed=0, skipped=len(transaction_ids))
    # Cross-organisation intents also post an obligation between clearing wallets (ledger/clearing.py).
    from ledger import clearing, p2p  # imported here: clearing builds on this module's types

    routes = clearing.route_intents(session, intents)
    wallets = lock_wallets(
        session, [*(w for i in intents for w in (i.source_wallet_id, i.destination_wallet_id)), *routes.wallet_ids]
    )
    budget = risk.load_budget(session, intents, wallets)
    plan, obligations = clearing.plan_with_obligations(intents, wallets, routes, budget)
    # Taken after the locks: entry times then never run backwards along a wallet's versions.
    posted_at: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    clearing.write_obligations(session, obligations, posted_at)
    _write_entries(session, plan.entries, posted_at)
    _write_balances(session, [w for w in wallets.values() if w.touched])
    _write_outcomes(session, plan, posted_at)
    p2p.follow_outcomes(session, plan.completed, plan.failed, posted_at)
    events.record_settlement_events(session, plan, posted_at)
    risk.record_breaches(session, budget)
    return SettleOutcome(
        completed=len(plan.completed), failed=len(plan.failed), skipped=len(transaction_ids) - len(intents)
    )


# COPY streams every entry of a batch (2,000 for 1,000 intents) in one statement, with no per-row
# statement or parameter binding as an executemany INSERT has.
_COPY_ENTRIES = (
    "COPY ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version, created_at)"
    " FROM STDIN"
)


def _write_entries(session: Session, entries: list[PlannedEntry], posted_at: datetime) -> None:
    if not entries:
        return
    # The session's own psycopg connection, so the COPY is part of the batch's transaction.
    connection = session.connection().connection.driver_connection
    assert connection is not None, "the session has a live database connection"
    with connection.cursor() as cursor, cursor.copy(_COPY_ENTRIES) as copy:
        for e in entries:
            copy.write_row(
                (
                    uuid.uuid4(),
                    e.wallet_id,
                    e.transaction_id,
                    e.direction.value,
                    e.amount,
                    e.balance_after,
                    e.wallet_version,
                    posted_at,
                )
            )


_UPDATE_BALANCES = text(
    """
    UPDATE wallets AS w
       SET balance = v.balance, version = v.version, updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:versions AS bigint[]))
           AS v(id, balance, version)
     WHERE w.id = v.id
    """
)


def _write_balances(session: Session, wallets: list[WalletState]) -> None:
    if not wallets:
        return
    session.execute(
        _UPDATE_BALANCES,
        {
            "ids": [w.id for w in wallets],
            "balances": [w.balance for w in wallets],
            "versions": [w.version for w in wallets],
        },
    )


_UPDATE_OUTCOMES = text(
    """
    UPDATE transactions AS t
       SET status = v.status, failure_reason = v.reason, completed_at = :posted_at
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]))
           AS v(id, status, reason)
     WHERE t.id = v.id AND t.status = 'PENDING'
    """
)


def _write_outcomes(session: Session, plan: Plan, posted_at: datetime) -> None:
    ids = [*plan.completed, *plan.failed]
    statuses = [TransactionStatus.COMPLETED.value] * len(plan.completed) + [TransactionStatus.FAILED.value] * len(
        plan.failed
    )
    reasons: list[str | None] = [None] * len(plan.completed) + [r.value for r in plan.failed.values()]
    updated = session.execute(
        _UPDATE_OUTCOMES, {"ids": ids, "statuses": statuses, "reasons": reasons, "posted_at": posted_at}
    )
    assert updated.rowcount == len(ids), "every claimed intent reaches exactly one final status"  # type: ignore[attr-defined]
