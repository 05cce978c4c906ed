"""Planning a batch of intents against in-memory wallet states: pure, no database.

The engine (`ledger.settlement.posting`) claims intents and locks their wallets, then hands them here
in the order they apply; this module decides, intent by intent, which complete and which fail and
why, and the entries the completed ones post. Everything here is plain values, so the rules are
tested by property tests without a database (tests/unit/ledger/test_plan_postings.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from models import Direction, FailureReason, TransactionType, WalletStatus, WalletType

BIGINT_MAX = 2**63 - 1
# Plain strings: the plan compares them once per intent, and an enum member costs a lookup each time.
_ACTIVE = WalletStatus.ACTIVE.value
_SYSTEM = WalletType.SYSTEM.value
_DEBIT = Direction.DEBIT.value
_CREDIT = Direction.CREDIT.value

OrgCurrency = tuple[uuid.UUID, str]


@dataclass(frozen=True, slots=True)
class Intent:
    id: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    type: str = TransactionType.TRANSFER.value


@dataclass(slots=True)
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
        return self.type == _SYSTEM

    def post(self, delta: int) -> tuple[int, int]:
        self.balance += delta
        self.version += 1
        self.touched = True
        assert -BIGINT_MAX <= self.balance <= BIGINT_MAX, "balance outside BIGINT"
        return self.balance, self.version

    def shift(self, balance: int, version: int) -> None:
        """Move the state by what others posted between an unlocked read and the lock (late wallets)."""
        self.balance += balance
        self.version += version
        assert -BIGINT_MAX <= self.balance <= BIGINT_MAX, "balance outside BIGINT"


class PlannedEntry(NamedTuple):
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


# The only intents that may name a SYSTEM wallet, and on which side: a deposit comes out of the
# treasury, a withdrawal goes into it. Any other intent naming one (a transfer written behind the
# API's back, or one some future intake forgot to check) fails SYSTEM_WALLET.
_SYSTEM_SIDE = {TransactionType.DEPOSIT.value: "source", TransactionType.WITHDRAWAL.value: "destination"}


def _misuses_system_wallet(intent: Intent, source: WalletState, destination: WalletState) -> bool:
    side = _SYSTEM_SIDE.get(intent.type)
    return (source.type == _SYSTEM and side != "source") or (destination.type == _SYSTEM and side != "destination")


def refusal(intent: Intent, source: WalletState, destination: WalletState) -> FailureReason | None:
    """Why the intent cannot post against these balances, or None when it can."""
    if (source.type == _SYSTEM or destination.type == _SYSTEM) and _misuses_system_wallet(intent, source, destination):
        return FailureReason.SYSTEM_WALLET
    if source.status != _ACTIVE or destination.status != _ACTIVE:
        return FailureReason.WALLET_NOT_ACTIVE
    if not (intent.currency == source.currency == destination.currency):
        return FailureReason.CURRENCY_MISMATCH
    if source.balance < intent.amount and not source.may_go_negative():
        return FailureReason.INSUFFICIENT_FUNDS
    return None


class Budget(Protocol):
    """What the plan asks of the risk limits (`ledger.settlement.risk.RiskBudget`)."""

    def admit(self, intent: Intent) -> bool: ...


def plan_postings(
    intents: Iterable[Intent], wallets: dict[uuid.UUID, WalletState], budget: Budget | None = None
) -> Plan:
    """Apply intents in order against in-memory wallet states. Pure: no database.

    With a risk budget, an intent that would otherwise complete is charged to it, or fails RISK_LIMIT.
    """
    plan = Plan()
    entries, completed = plan.entries, plan.completed
    for intent in intents:
        source, destination = wallets[intent.source_wallet_id], wallets[intent.destination_wallet_id]
        reason = refusal(intent, source, destination)
        if reason is None and budget is not None and not budget.admit(intent):
            reason = FailureReason.RISK_LIMIT
        if reason is not None:
            plan.failed[intent.id] = reason
            continue
        amount = intent.amount
        debit_after, debit_version = source.post(-amount)
        credit_after, credit_version = destination.post(amount)
        entries.append(PlannedEntry(source.id, intent.id, Direction.DEBIT, amount, debit_after, debit_version))
        entries.append(PlannedEntry(destination.id, intent.id, Direction.CREDIT, amount, credit_after, credit_version))
        completed.append(intent.id)
    _assert_balanced(plan)
    return plan


def _assert_balanced(plan: Plan) -> None:
    debits = sum(e.amount for e in plan.entries if e.direction is Direction.DEBIT)
    credits = sum(e.amount for e in plan.entries if e.direction is Direction.CREDIT)
    assert debits == credits, f"unbalanced plan: debits {debits} != credits {credits}"
    assert len(plan.entries) == 2 * len(plan.completed), "every completed intent posts exactly two entries"
