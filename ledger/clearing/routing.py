"""Cross-organisation obligations, recorded with the transfer that creates them.

A transfer between wallets of two organisations posts as any other: one DEBIT on the sender's
wallet, one CREDIT on the receiver's. In the same database transaction a companion CLEARING
transaction records what the sender's organisation now owes the receiver's:

    transfer   T:  DEBIT  sender wallet (org A)      CREDIT receiver wallet (org B)     amount X
    obligation C:  DEBIT  clearing wallet of org B   CREDIT clearing wallet of org A    amount X

So each organisation's own wallets still sum to zero (A: -X + X, B: +X - X), every transaction has
one DEBIT and one CREDIT of its amount, and the whole system sums to zero per currency. A clearing
wallet's balance is what its organisation owes the others (positive) or is owed (negative) for
obligations not yet settled; `ledger.clearing.batches` settles them against the treasuries.

The hook into `ledger.settlement.posting.settle_transfers`:

    routes  = route_intents(session, intents, owners)    # before any wallet lock; creates clearing wallets
    wallets = lock_wallets(session, [..., *routes.wallet_ids])      # one global id order, as always
    plan, obligations = plan_with_obligations(intents, wallets, routes)           # pure
    write_obligations(session, obligations, posted_at)                # before the entries that name them
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from ledger.settlement.plan import (
    HoldState,
    Intent,
    OrgCurrency,
    Plan,
    PlannedEntry,
    Review,
    WalletState,
    plan_postings,
)
from ledger.settlement.risk import RiskBudget
from ledger.wallets import get_or_create_system_wallet
from models import (
    CLEARING_WALLET_NAME,
    Direction,
    FailureReason,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    WalletStatus,
    WalletType,
)
from models.ids import new_id


@dataclass(frozen=True)
class Route:
    """Where a cross-organisation intent's obligation goes, should the intent complete."""

    intent_id: uuid.UUID
    debtor_organization_id: uuid.UUID  # the sender's organisation: it owes
    creditor_organization_id: uuid.UUID  # the receiver's organisation: it is owed
    debtor_clearing_id: uuid.UUID
    creditor_clearing_id: uuid.UUID

    @property
    def clearing_wallet_ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.debtor_clearing_id, self.creditor_clearing_id


@dataclass
class Routes:
    by_intent: dict[uuid.UUID, Route] = field(default_factory=dict)

    @property
    def wallet_ids(self) -> list[uuid.UUID]:
        return [w for r in self.by_intent.values() for w in r.clearing_wallet_ids]


@dataclass(frozen=True)
class PlannedObligation:
    id: uuid.UUID
    parent_transaction_id: uuid.UUID
    route: Route
    amount: int
    currency: str


def existing_system_wallet_ids(
    session: Session, keys: Iterable[OrgCurrency], name: str = CLEARING_WALLET_NAME
) -> dict[OrgCurrency, uuid.UUID]:
    """Each (organisation, currency)'s SYSTEM wallet of that name, where one exists."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(Wallet.organization_id, Wallet.currency, Wallet.id).where(
            Wallet.type == WalletType.SYSTEM,
            Wallet.name == name,
            tuple_(Wallet.organization_id, Wallet.currency).in_(wanted),
        )
    ).all()
    return {(r.organization_id, r.currency): r.id for r in rows}


def system_wallet_ids(
    session: Session, keys: Iterable[OrgCurrency], name: str = CLEARING_WALLET_NAME
) -> dict[OrgCurrency, uuid.UUID]:
    """Each (organisation, currency)'s SYSTEM wallet of that name, created where it does not exist yet.

    Called before the caller locks any wallet: a creation here never waits while holding a lock.
    """
    wanted = set(keys)
    found = existing_system_wallet_ids(session, wanted, name)
    for organization_id, currency in sorted(wanted - found.keys()):
        found[(organization_id, currency)] = get_or_create_system_wallet(session, organization_id, currency, name)
    return found


def route_intents(session: Session, intents: Sequence[Intent], owners: Mapping[uuid.UUID, OrgCurrency]) -> Routes:
    """The intents that cross organisations, with the clearing wallets their obligations need.

    `owners` is each named wallet's (organisation, currency), read with the intents: neither ever
    changes, so reading them before the locks is safe. An intent whose wallets disagree on currency
    will fail CURRENCY_MISMATCH: it gets no route. With no intent crossing, no query runs.
    """
    crossing = []
    for intent in intents:
        if intent.type == TransactionType.HOLD:
            continue  # a hold moves no money; its captures cross like transfers
        (source_org, source_currency) = owners[intent.source_wallet_id]
        (destination_org, destination_currency) = owners[intent.destination_wallet_id]
        if source_org != destination_org and source_currency == destination_currency == intent.currency:
            crossing.append((intent, source_org, destination_org))
    clearing = system_wallet_ids(session, [(org, intent.currency) for intent, a, b in crossing for org in (a, b)])
    return Routes(
        {
            intent.id: Route(
                intent_id=intent.id,
                debtor_organization_id=debtor,
                creditor_organization_id=creditor,
                debtor_clearing_id=clearing[(debtor, intent.currency)],
                creditor_clearing_id=clearing[(creditor, intent.currency)],
            )
            for intent, debtor, creditor in crossing
        }
    )


def _clearing_active(route: Route, wallets: dict[uuid.UUID, WalletState]) -> bool:
    ids = (route.debtor_clearing_id, route.creditor_clearing_id)
    return all(wallets[w].status == WalletStatus.ACTIVE for w in ids)


def plan_with_obligations(
    intents: Sequence[Intent],
    wallets: dict[uuid.UUID, WalletState],
    routes: Routes,
    budget: RiskBudget | None = None,
    holds: dict[uuid.UUID, HoldState] | None = None,
    review: Review | None = None,
    watched: frozenset[uuid.UUID] = frozenset(),
) -> tuple[Plan, list[PlannedObligation]]:
    """`plan_postings`, plus one obligation per completed cross-organisation intent. Pure.

    A cross-organisation intent fails WALLET_NOT_ACTIVE when either clearing wallet was locked or
    closed, as it would for its own wallets: an obligation that cannot be recorded is not created.
    """
    refused = {
        i.id: FailureReason.WALLET_NOT_ACTIVE
        for i in intents
        if i.id in routes.by_intent and not _clearing_active(routes.by_intent[i.id], wallets)
    }
    plan = plan_postings([i for i in intents if i.id not in refused], wallets, budget, holds, review, watched)
    plan.failed.update(refused)
    _release_refused_captures([i for i in intents if i.id in refused], holds)
    by_id = {i.id: i for i in intents}
    obligations = []
    for intent_id in plan.completed:
        route = routes.by_intent.get(intent_id)
        if route is not None:
            obligations.append(_post_obligation(plan, by_id[intent_id], route, wallets))
    return plan, obligations


def _release_refused_captures(refused: Sequence[Intent], holds: dict[uuid.UUID, HoldState] | None) -> None:
    """A capture refused here gives its reservation back to its hold, as one refused by the plan does."""
    for intent in refused:
        if intent.hold_id is None or holds is None:
            continue
        hold = holds[intent.hold_id]
        if hold.status == "HELD":
            hold.reserved_amount -= intent.amount
            hold.touched = True


def _post_obligation(
    plan: Plan, intent: Intent, route: Route, wallets: dict[uuid.UUID, WalletState]
) -> PlannedObligation:
    obligation = PlannedObligation(new_id(), intent.id, route, intent.amount, intent.currency)
    creditor, debtor = wallets[route.creditor_clearing_id], wallets[route.debtor_clearing_id]
    debit_after, debit_version = creditor.post(-intent.amount)
    credit_after, credit_version = debtor.post(intent.amount)
    plan.entries.append(
        PlannedEntry(creditor.id, obligation.id, Direction.DEBIT, intent.amount, debit_after, debit_version)
    )
    plan.entries.append(
        PlannedEntry(debtor.id, obligation.id, Direction.CREDIT, intent.amount, credit_after, credit_version)
    )
    return obligation


def write_obligations(session: Session, obligations: list[PlannedObligation], posted_at: datetime) -> None:
    """The CLEARING transactions, COMPLETED at the instant their transfers complete."""
    if not obligations:
        return
    session.execute(
        insert(Transaction),
        [
            {
                "id": o.id,
                "organization_id": o.route.debtor_organization_id,
                "created_by": None,
                "type": TransactionType.CLEARING,
                "status": TransactionStatus.COMPLETED,
                "amount": o.amount,
                "currency": o.currency,
                "source_wallet_id": o.route.creditor_clearing_id,
                "destination_wallet_id": o.route.debtor_clearing_id,
                "description": "cross-organisation obligation",
                "metadata_": {
                    "transfer_id": str(o.parent_transaction_id),
                    "debtor_organization_id": str(o.route.debtor_organization_id),
                    "creditor_organization_id": str(o.route.creditor_organization_id),
                },
                "parent_transaction_id": o.parent_transaction_id,
                "created_at": posted_at,
                "completed_at": posted_at,
            }
            for o in obligations
        ],
    )
