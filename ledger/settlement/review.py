"""Fraud rules in the engine: which TRANSFER intents stop for review instead of settling.

Four rules, each optional (models/fraud.py), per organisation of the source wallet:
`review_amount_over`, `max_transfers_per_wallet_per_10_minutes` (transfers accepted in the last 10
minutes that completed or went to review, and the batch's earlier ones), `new_destination_amount_over`
(a destination the source never paid a COMPLETED transfer) and `amount_over_wallet_p95_factor`
(more than factor times the 95th percentile of the source's last P95_HISTORY_MAX completed transfers,
once it has P95_HISTORY_MIN of them).

Only TRANSFER intents (single and bulk) are reviewed: deposits and withdrawals are the treasury's,
captures settle a hold already accepted, refunds send back what came, and a P2P settle pays a
request the payer accepted; an intent approved in review is never sent back.

The hook, like the risk budget's (`ledger.settlement.risk`), after the wallets are locked:

    review = load_review(session, intents, wallets, owners, exempt)  # rules: one query; usage if needed
    plan   = plan_postings(intents, wallets, budget, holds, review)   # pure: held and IN_REVIEW, or not
    write_reviews(session, plan, posted_at)                           # statuses, events, audit
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.access import Actor, require_org_admin
from ledger.integrity import audit, events
from models import FraudRules, Transaction, TransactionType, WalletType
from models.fraud import FRAUD_RULE_NAMES

if TYPE_CHECKING:
    from ledger.settlement.plan import Intent, Plan, WalletState

RATE_WINDOW = timedelta(minutes=10)
P95_HISTORY_MIN = 5
P95_HISTORY_MAX = 100
REVIEW_ACTOR_LABEL = "system:review"
REVIEW_REQUIRED = "transaction.review_required"
_TRANSFER = TransactionType.TRANSFER.value


@dataclass(frozen=True)
class Rules:
    """One organisation's fraud rules; None means off."""

    review_amount_over: int | None = None
    max_transfers_per_wallet_per_10_minutes: int | None = None
    new_destination_amount_over: int | None = None
    amount_over_wallet_p95_factor: float | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in FRAUD_RULE_NAMES)


@dataclass
class WalletHistory:
    """What the rules need to know of a source wallet's past, moved along as the batch plans."""

    transfers_last_10_minutes: int = 0
    paid_destinations: set[uuid.UUID] = field(default_factory=set)
    p95_amount: float | None = None


@dataclass
class Review:
    """The rules and history of a batch's source wallets, applied intent by intent. Pure."""

    rules: dict[uuid.UUID, Rules] = field(default_factory=dict)  # by source wallet
    history: dict[uuid.UUID, WalletHistory] = field(default_factory=dict)
    exempt: Collection[uuid.UUID] = ()

    def reasons(self, intent: Intent) -> tuple[str, ...]:
        """The rules this intent trips (then it goes to review), and either way it counts in its
        wallet's history as the batch moves on."""
        rules = self.rules.get(intent.source_wallet_id)
        if rules is None or intent.type != _TRANSFER or intent.approved or intent.id in self.exempt:
            return ()
        history = self.history.setdefault(intent.source_wallet_id, WalletHistory())
        tripped = tripped_rules(rules, history, intent.destination_wallet_id, intent.amount)
        history.transfers_last_10_minutes += 1
        if not tripped:
            history.paid_destinations.add(intent.destination_wallet_id)
        return tripped


def tripped_rules(rules: Rules, history: WalletHistory, destination: uuid.UUID, amount: int) -> tuple[str, ...]:
    """The names of the rules a transfer of `amount` to `destination` trips, in rule order."""
    tripped = []
    if rules.review_amount_over is not None and amount > rules.review_amount_over:
        tripped.append("review_amount_over")
    rate_max = rules.max_transfers_per_wallet_per_10_minutes
    if rate_max is not None and history.transfers_last_10_minutes + 1 > rate_max:
        tripped.append("max_transfers_per_wallet_per_10_minutes")
    new_over = rules.new_destination_amount_over
    if new_over is not None and amount > new_over and destination not in history.paid_destinations:
        tripped.append("new_destination_amount_over")
    factor = rules.amount_over_wallet_p95_factor
    if factor is not None and history.p95_amount is not None and amount > factor * history.p95_amount:
        tripped.append("amount_over_wallet_p95_factor")
    return tuple(tripped)


# --- reading rules and history --------------------------------------------------------------------

_RULES = text(
    f"SELECT organization_id, {', '.join(FRAUD_RULE_NAMES)} FROM fraud_rules"
    " WHERE organization_id = ANY(CAST(:orgs AS uuid[]))"
)
# Transfers out of each wallet accepted in the window that completed or wait in review.
_RECENT = text(
    """
    SELECT source_wallet_id, count(*) FROM transactions
     WHERE source_wallet_id = ANY(CAST(:ids AS uuid[])) AND created_at > CAST(:since AS timestamptz)
       AND type = 'TRANSFER' AND status IN ('COMPLETED', 'IN_REVIEW')
     GROUP BY source_wallet_id
    """
)
_PAID = text(
    """
    SELECT p.source, p.destination FROM unnest(CAST(:sources AS uuid[]), CAST(:destinations AS uuid[]))
        AS p(source, destination)
     WHERE EXISTS (SELECT 1 FROM transactions t
                    WHERE t.source_wallet_id = p.source AND t.destination_wallet_id = p.destination
                      AND t.type = 'TRANSFER' AND t.status = 'COMPLETED')
    """
)
_P95 = text(
    f"""
    SELECT w.id, s.p95, s.n FROM unnest(CAST(:ids AS uuid[])) AS w(id)
     CROSS JOIN LATERAL (
        SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY r.amount) AS p95, count(*) AS n
          FROM (SELECT amount FROM transactions t
                 WHERE t.source_wallet_id = w.id AND t.type = 'TRANSFER' AND t.status = 'COMPLETED'
                 ORDER BY t.created_at DESC LIMIT {P95_HISTORY_MAX}) AS r
     ) AS s
    """
)


def _rules(row: Any) -> Rules:
    factor = row.amount_over_wallet_p95_factor  # NUMERIC: a Decimal from the driver
    return Rules(
        row.review_amount_over,
        row.max_transfers_per_wallet_per_10_minutes,
        row.new_destination_amount_over,
        None if factor is None else float(factor),
    )


def load_review(
    session: Session,
    intents: Iterable[Intent],
    wallets: Mapping[uuid.UUID, WalletState],
    owners: Mapping[uuid.UUID, tuple[uuid.UUID, str]],
    exempt: Collection[uuid.UUID] = (),
) -> Review | None:
    """The review of every non-SYSTEM wallet that sends a TRANSFER here and whose organisation has a
    rule, or None. One query when no organisation has rules; none when the batch has no transfer."""
    transfers = [
        i
        for i in intents
        if i.type == _TRANSFER and not i.approved and wallets[i.source_wallet_id].type != WalletType.SYSTEM
    ]
    if not transfers:
        return None
    organizations = {owners[i.source_wallet_id][0] for i in transfers}
    rows = session.execute(_RULES, {"orgs": sorted(organizations)}).all()
    by_org = {row[0]: _rules(row) for row in rows}
    by_org = {org: rules for org, rules in by_org.items() if rules.any}
    if not by_org:
        return None
    ruled = {
        i.source_wallet_id: by_org[owners[i.source_wallet_id][0]]
        for i in transfers
        if owners[i.source_wallet_id][0] in by_org
    }
    return Review(rules=ruled, history=_load_history(session, transfers, ruled), exempt=exempt)


def _load_history(
    session: Session, transfers: list[Intent], ruled: Mapping[uuid.UUID, Rules]
) -> dict[uuid.UUID, WalletHistory]:
    """Each ruled wallet's history: only what its rules read, one query per kind."""
    history = {wallet_id: WalletHistory() for wallet_id in ruled}

    def wallets_with(name: str) -> list[uuid.UUID]:
        return sorted(w for w, rules in ruled.items() if getattr(rules, name) is not None)

    counted = wallets_with("max_transfers_per_wallet_per_10_minutes")
    if counted:
        now: datetime = session.execute(select(text("clock_timestamp()"))).scalar_one()
        for wallet_id, count in session.execute(_RECENT, {"ids": counted, "since": now - RATE_WINDOW}):
            history[wallet_id].transfers_last_10_minutes = int(count)
    paying = set(wallets_with("new_destination_amount_over"))
    pairs = sorted({(i.source_wallet_id, i.destination_wallet_id) for i in transfers if i.source_wallet_id in paying})
    if pairs:
        parameters = {"sources": [p[0] for p in pairs], "destinations": [p[1] for p in pairs]}
        for source, destination in session.execute(_PAID, parameters):
            history[source].paid_destinations.add(destination)
    sized = wallets_with("amount_over_wallet_p95_factor")
    if sized:
        for wallet_id, p95, count in session.execute(_P95, {"ids": sized}):
            if count >= P95_HISTORY_MIN:
                history[wallet_id].p95_amount = float(p95)
    return history


# --- writing what the plan sent to review ---------------------------------------------------------

_SET_IN_REVIEW = text(
    """
    UPDATE transactions AS t
       SET status = 'IN_REVIEW', review_started_at = CAST(:posted_at AS timestamptz),
           review_reasons = string_to_array(v.reasons, ',')
      FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS v(id, reasons)
     WHERE t.id = v.id
    RETURNING t.id
    """
)


def review_data(row: Transaction) -> dict[str, Any]:
    """A transaction as review events carry it: the transaction's fields and its review's."""
    return {
        **events.transaction_data(row),
        "review_reasons": list(row.review_reasons or []),
        "review_started_at": row.review_started_at,
        "review_decision": row.review_decision,
        "reviewed_by": row.reviewed_by,
        "reviewed_at": row.reviewed_at,
        "review_note": row.review_note,
    }


def write_reviews(session: Session, plan: Plan, posted_at: datetime) -> None:
    """The intents the plan sent to review: IN_REVIEW with their reasons, one event and audit row each."""
    if not plan.in_review:
        return
    ids = list(plan.in_review)
    rows = session.execute(
        _SET_IN_REVIEW,
        {"ids": ids, "reasons": [",".join(plan.in_review[i]) for i in ids], "posted_at": posted_at},
    ).all()
    assert len(rows) == len(ids), "every intent sent to review is written IN_REVIEW"
    order = {intent_id: n for n, intent_id in enumerate(ids)}
    written = session.scalars(
        select(Transaction).where(Transaction.id.in_(ids)).execution_options(populate_existing=True)
    )
    for row in sorted(written, key=lambda r: order[r.id]):
        data = review_data(row)
        events.record_event(
            session,
            REVIEW_REQUIRED,
            aggregate=("transaction", row.id),
            data=data,
            wallet_ids=[row.source_wallet_id],
            organization_ids=[row.organization_id],
        )
        audit.record(
            session,
            None,
            REVIEW_REQUIRED,
            target=("transaction", row.id),
            after={"review_reasons": data["review_reasons"], "amount": row.amount},
            organization_id=row.organization_id,
            actor_label=REVIEW_ACTOR_LABEL,
        )


# --- configuring rules ----------------------------------------------------------------------------


def get_rules(session: Session, organization_id: uuid.UUID) -> FraudRules | None:
    return session.get(FraudRules, organization_id)


def rules_view(organization_id: uuid.UUID, row: FraudRules | None) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        **{name: getattr(row, name) if row else None for name in FRAUD_RULE_NAMES},
        "updated_at": row.updated_at if row else None,
        "updated_by": row.updated_by if row else None,
    }


def set_rules(session: Session, actor: Actor, rules: Rules) -> tuple[FraudRules, dict[str, Any], dict[str, Any]]:
    """OWNER/ADMIN replace their organisation's rules. Answers the row, and the rules before and after."""
    require_org_admin(actor)
    # Create the row if need be, then lock it: two first PUTs at once both succeed, one after the other.
    session.execute(insert(FraudRules).values(organization_id=actor.organization_id).on_conflict_do_nothing())
    row = session.get(FraudRules, actor.organization_id, with_for_update=True, populate_existing=True)
    assert row is not None, "the row was just created or already existed"
    before = {name: getattr(row, name) for name in FRAUD_RULE_NAMES}
    for name in FRAUD_RULE_NAMES:
        setattr(row, name, getattr(rules, name))
    row.updated_by = actor.user_id
    session.flush()
    session.refresh(row)
    return row, before, {name: getattr(row, name) for name in FRAUD_RULE_NAMES}
