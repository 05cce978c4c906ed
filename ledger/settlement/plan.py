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

from models import Direction, FailureReason, HoldStatus, TransactionType, WalletStatus, WalletType

BIGINT_MAX = 2**63 - 1
# Plain strings: the plan compares them once per intent, and an enum member costs a lookup each time.
_ACTIVE = WalletStatus.ACTIVE.value
_SYSTEM = WalletType.SYSTEM.value
_DEBIT = Direction.DEBIT.value
_CREDIT = Direction.CREDIT.value
_HOLD = TransactionType.HOLD.value
_CAPTURE = TransactionType.CAPTURE.value
_HELD = HoldStatus.HELD.value

OrgCurrency = tuple[uuid.UUID, str]


@dataclass(frozen=True, slots=True)
class Intent:
    id: uuid.UUID
    source_wallet_id: uuid.UUID
    destination_wallet_id: uuid.UUID
    amount: int
    currency: str
    type: str = TransactionType.TRANSFER.value
    # A CAPTURE's hold (a HOLD intent's hold has the intent's own id).
    hold_id: uuid.UUID | None = None
    # Approved in review (ledger/intents/review.py): never sent to review again.
    approved: bool = False


@dataclass(slots=True)
class WalletState:
    """A locked wallet's balance, version and held amount as the plan moves through the batch."""

    id: uuid.UUID
    type: str
    status: str
    currency: str
    balance: int
    version: int
    held_amount: int = 0
    touched: bool = False

    def may_go_negative(self) -> bool:
        return self.type == _SYSTEM

    @property
    def available(self) -> int:
        """What a debit may take: the balance less what open holds reserve."""
        return self.balance - self.held_amount

    def hold(self, delta: int) -> None:
        """Reserve (delta > 0) or release (delta < 0) part of the balance: no entry, no version."""
        self.held_amount += delta
        self.touched = True
        assert self.held_amount >= 0, "held_amount below zero"

    def post(self, delta: int) -> tuple[int, int]:
        self.balance += delta
        self.version += 1
        self.touched = True
        assert -BIGINT_MAX <= self.balance <= BIGINT_MAX, "balance outside BIGINT"
        return self.balance, self.version

    def shift(self, balance: int, version: int, held: int = 0) -> None:
        """Move the state by what others posted (or held) between an unlocked read and the lock (late wallets)."""
        self.balance += balance
        self.version += version
        self.held_amount += held
        assert -BIGINT_MAX <= self.balance <= BIGINT_MAX, "balance outside BIGINT"


@dataclass(slots=True)
class HoldState:
    """A locked hold (models/hold.py) as the plan moves through the batch."""

    id: uuid.UUID
    status: str
    amount: int
    captured_amount: int
    reserved_amount: int
    final_capture_id: uuid.UUID | None = None
    touched: bool = False

    @property
    def remaining(self) -> int:
        return self.amount - self.captured_amount


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
    # Completed HOLD intents: their holds are HELD now; they post no entry.
    held: list[uuid.UUID] = field(default_factory=list)
    # For the watched wallets only (those with balance monitors): (wallet id, intent id, balance,
    # held amount) after each intent that moved them, in intent order (ledger/monitors.py).
    trace: list[tuple[uuid.UUID, uuid.UUID, int, int]] = field(default_factory=list)
    # Intents a fraud rule stopped, with the rules tripped: IN_REVIEW, their amount held on the source.
    in_review: dict[uuid.UUID, tuple[str, ...]] = field(default_factory=dict)


# The only intents that may name a SYSTEM wallet, and on which side: a deposit comes out of the
# treasury, a withdrawal goes into it. Any other intent naming one (a transfer written behind the
# API's back, or one some future intake forgot to check) fails SYSTEM_WALLET.
_SYSTEM_SIDE = {TransactionType.DEPOSIT.value: "source", TransactionType.WITHDRAWAL.value: "destination"}


def _misuses_system_wallet(intent: Intent, source: WalletState, destination: WalletState) -> bool:
    side = _SYSTEM_SIDE.get(intent.type)
    return (source.type == _SYSTEM and side != "source") or (destination.type == _SYSTEM and side != "destination")


def refusal(
    intent: Intent, source: WalletState, destination: WalletState, *, released: int = 0
) -> FailureReason | None:
    """Why the intent cannot post against these balances, or None when it can.

    Debits are checked against the available balance; `released` is what the intent itself
    releases from the source's held amount as it debits (a capture takes from its own hold)."""
    if (source.type == _SYSTEM or destination.type == _SYSTEM) and _misuses_system_wallet(intent, source, destination):
        return FailureReason.SYSTEM_WALLET
    if source.status != _ACTIVE or destination.status != _ACTIVE:
        return FailureReason.WALLET_NOT_ACTIVE
    if not (intent.currency == source.currency == destination.currency):
        return FailureReason.CURRENCY_MISMATCH
    if source.available + released < intent.amount and not source.may_go_negative():
        return FailureReason.INSUFFICIENT_FUNDS
    return None


def hold_refusal(hold: HoldState) -> FailureReason | None:
    """Why a capture cannot take from its hold: the hold ended (or expired) before it settled."""
    if hold.status == _HELD:
        return None
    return FailureReason.HOLD_EXPIRED if hold.status == HoldStatus.EXPIRED.value else FailureReason.HOLD_NOT_ACTIVE


class Budget(Protocol):
    """What the plan asks of the risk limits (`ledger.settlement.risk.RiskBudget`)."""

    def admit(self, intent: Intent) -> bool: ...


class Review(Protocol):
    """What the plan asks of the fraud rules (`ledger.settlement.review.Review`)."""

    def reasons(self, intent: Intent) -> tuple[str, ...]: ...


def plan_postings(
    intents: Iterable[Intent],
    wallets: dict[uuid.UUID, WalletState],
    budget: Budget | None = None,
    holds: dict[uuid.UUID, HoldState] | None = None,
    review: Review | None = None,
    watched: frozenset[uuid.UUID] = frozenset(),
) -> Plan:
    """Apply intents in order against in-memory wallet states. Pure: no database.

    With a risk budget, an intent that would otherwise complete is charged to it, or fails RISK_LIMIT.
    With fraud rules, one that would still complete but trips a rule is held on its source instead
    and goes to review (`plan.in_review`): no entry.
    HOLD and CAPTURE intents also move their hold's state in `holds` (keyed by hold id).
    Each completed intent that moves a `watched` wallet leaves that wallet's state in `plan.trace`.
    """
    plan = Plan()
    entries, completed = plan.entries, plan.completed
    for intent in intents:
        source, destination = wallets[intent.source_wallet_id], wallets[intent.destination_wallet_id]
        if intent.type == _HOLD:
            assert holds is not None, "HOLD intents are planned with their holds"
            _plan_hold(plan, intent, source, destination, holds[intent.id])
            if watched and intent.id in plan.held and source.id in watched:
                plan.trace.append((source.id, intent.id, source.balance, source.held_amount))
            continue
        hold = None
        if intent.type == _CAPTURE:
            assert holds is not None and intent.hold_id is not None, "CAPTURE intents are planned with their holds"
            hold = holds[intent.hold_id]
            reason = hold_refusal(hold) or refusal(intent, source, destination, released=intent.amount)
        else:
            reason = refusal(intent, source, destination)
        if reason is None and budget is not None and not budget.admit(intent):
            reason = FailureReason.RISK_LIMIT
        if reason is not None:
            plan.failed[intent.id] = reason
            if hold is not None and hold.status == _HELD:
                hold.reserved_amount -= intent.amount  # the capture's reservation goes back to the hold
                hold.touched = True
            continue
        if review is not None:
            tripped = review.reasons(intent)
            if tripped:
                source.hold(intent.amount)
                plan.in_review[intent.id] = tripped
                if watched:
                    _trace(plan.trace, intent.id, (source,), watched)
                continue
        if hold is not None:
            _take_from_hold(intent, source, hold)
        amount = intent.amount
        debit_after, debit_version = source.post(-amount)
        credit_after, credit_version = destination.post(amount)
        entries.append(PlannedEntry(source.id, intent.id, Direction.DEBIT, amount, debit_after, debit_version))
        entries.append(PlannedEntry(destination.id, intent.id, Direction.CREDIT, amount, credit_after, credit_version))
        completed.append(intent.id)
        if watched:
            _trace(plan.trace, intent.id, (source, destination), watched)
    _assert_balanced(plan)
    return plan


def _trace(
    trace: list[tuple[uuid.UUID, uuid.UUID, int, int]],
    intent_id: uuid.UUID,
    moved: tuple[WalletState, ...],
    watched: frozenset[uuid.UUID],
) -> None:
    for wallet in moved:
        if wallet.id in watched:
            trace.append((wallet.id, intent_id, wallet.balance, wallet.held_amount))


def _plan_hold(plan: Plan, intent: Intent, source: WalletState, destination: WalletState, hold: HoldState) -> None:
    """Reserve a hold's amount on its source, checked as a debit would be; no entry."""
    reason = refusal(intent, source, destination)
    if reason is not None:
        plan.failed[intent.id] = reason
        hold.status = HoldStatus.FAILED.value
    else:
        source.hold(intent.amount)
        hold.status = _HELD
        plan.completed.append(intent.id)
        plan.held.append(intent.id)
    hold.touched = True


def _take_from_hold(intent: Intent, source: WalletState, hold: HoldState) -> None:
    """A capture that posts: its amount leaves the hold (and the source's held amount); a final
    capture, or one that uses the hold up, ends it CAPTURED and releases what is left."""
    assert intent.amount <= hold.remaining, "a capture never exceeds what remains of its hold"
    source.hold(-intent.amount)
    hold.captured_amount += intent.amount
    hold.reserved_amount -= intent.amount
    if hold.remaining == 0 or hold.final_capture_id == intent.id:
        source.hold(-hold.remaining)
        hold.status = HoldStatus.CAPTURED.value
        hold.reserved_amount = 0  # captures still on their way find the hold ended
    hold.touched = True


def _assert_balanced(plan: Plan) -> None:
    debits = sum(e.amount for e in plan.entries if e.direction is Direction.DEBIT)
    credits = sum(e.amount for e in plan.entries if e.direction is Direction.CREDIT)
    assert debits == credits, f"unbalanced plan: debits {debits} != credits {credits}"
    posted = len(plan.completed) - len(plan.held)
    assert len(plan.entries) == 2 * posted, "every completed intent but a hold posts exactly two entries"
