"""Which wallets a batch locks last, and why planning their credits before the lock is sound."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ledger.clearing.routing import Route, Routes
from ledger.settlement.plan import Intent, WalletState, plan_postings
from ledger.settlement.posting import (
    LATE_LOCK_CREDITS_MIN,
    _wallets_of,
    late_wallets,
    shift_entries,
    unlocked_destinations,
)

HOT, OTHER, CLEARING_A, CLEARING_B = (uuid.UUID(int=n) for n in (1, 2, 3, 4))
PAYERS = [uuid.UUID(int=100 + n) for n in range(8)]


def credits_to(destination: uuid.UUID, count: int, amount: int = 10) -> list[Intent]:
    return [Intent(uuid.uuid4(), PAYERS[n % len(PAYERS)], destination, amount, "INR") for n in range(count)]


def test_a_wallet_only_credited_often_enough_is_late():
    intents = credits_to(HOT, LATE_LOCK_CREDITS_MIN) + credits_to(OTHER, LATE_LOCK_CREDITS_MIN - 1)
    assert late_wallets(intents, Routes()) == {HOT}


def test_a_wallet_the_batch_also_debits_is_locked_in_order():
    intents = [*credits_to(HOT, 2 * LATE_LOCK_CREDITS_MIN), Intent(uuid.uuid4(), HOT, OTHER, 5, "INR")]
    assert late_wallets(intents, Routes()) == frozenset()


def test_clearing_wallets_are_locked_in_order():
    intents = credits_to(HOT, LATE_LOCK_CREDITS_MIN)
    route = Route(intents[0].id, uuid.uuid4(), uuid.uuid4(), CLEARING_A, HOT)
    assert late_wallets(intents, Routes({intents[0].id: route})) == frozenset()


def state(wallet_id: uuid.UUID, balance: int, version: int) -> WalletState:
    return WalletState(id=wallet_id, type="PRIMARY", status="ACTIVE", currency="INR", balance=balance, version=version)


@given(
    amounts=st.lists(st.integers(1, 10_000), min_size=1, max_size=40),
    seen=st.tuples(st.integers(0, 10**9), st.integers(0, 1_000)),
    moved=st.tuples(st.integers(0, 10**9), st.integers(0, 1_000)),
)
def test_credits_planned_unlocked_then_shifted_are_the_credits_planned_under_the_lock(amounts, seen, moved):
    """What `lock_late` does: plan against the balance seen without a lock, then move the entries by
    what others posted before the lock. For a wallet the batch only credits, that is exactly the
    plan made against the balance found under the lock, outcomes and all."""
    payer = PAYERS[0]
    intents = [Intent(uuid.uuid4(), payer, HOT, amount, "INR") for amount in amounts]
    payer_balance = sum(amounts) // 2  # some intents fail for funds, on the payer's side only

    def plan(balance: int, version: int):
        return plan_postings(intents, {payer: state(payer, payer_balance, 0), HOT: state(HOT, balance, version)})

    early = plan(*seen)
    locked = plan(seen[0] + moved[0], seen[1] + moved[1])

    assert early.completed == locked.completed and early.failed == locked.failed
    shifted = shift_entries([e for e in early.entries if e.wallet_id == HOT], {HOT: moved})
    assert shifted == [e for e in locked.entries if e.wallet_id == HOT]


def test_a_hold_destination_is_neither_late_nor_locked():
    """A HOLD intent reserves on its source and moves nothing on its destination: a batch of holds
    towards one merchant locks only the payers, and never queues on the merchant's row lock."""
    holds = [
        Intent(uuid.uuid4(), PAYERS[n % len(PAYERS)], HOT, 10, "INR", "HOLD") for n in range(LATE_LOCK_CREDITS_MIN)
    ]
    assert late_wallets(holds, Routes()) == frozenset()
    assert {w for i in holds for w in _wallets_of(i, Routes())} == set(PAYERS)
    assert unlocked_destinations(holds, PAYERS) == {HOT}
    # Named by a transfer too, it is locked with the others (or late), never read unlocked.
    transfer = Intent(uuid.uuid4(), OTHER, HOT, 5, "INR")
    assert unlocked_destinations([*holds, transfer], [*PAYERS, OTHER, HOT]) == set()
