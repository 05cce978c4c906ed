"""Holds in the pure plan: a state machine over holds, captures, voids, expiries and transfers on a few
wallets, checking after every step that held amounts are exact, available balances never go below
zero, captures never exceed their hold and money is conserved."""

from __future__ import annotations

import uuid

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.settlement.plan import HoldState, Intent, WalletState, plan_postings
from models import FailureReason

WALLETS = [uuid.UUID(int=i + 1) for i in range(3)]
START = 1_000


def _wallet(id_: uuid.UUID) -> WalletState:
    return WalletState(id=id_, type="PRIMARY", status="ACTIVE", currency="INR", balance=START, version=0)


class HoldMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wallets = {w: _wallet(w) for w in WALLETS}
        self.holds: dict[uuid.UUID, HoldState] = {}
        self.sources: dict[uuid.UUID, uuid.UUID] = {}
        self.destinations: dict[uuid.UUID, uuid.UUID] = {}
        # Captures accepted (reserved on their hold, as intake does) and not settled yet.
        self.pending: list[Intent] = []

    @rule(source=st.sampled_from(WALLETS), destination=st.sampled_from(WALLETS), amount=st.integers(1, 800))
    def hold(self, source: uuid.UUID, destination: uuid.UUID, amount: int) -> None:
        if source == destination:
            return
        hold_id = uuid.uuid4()
        self.holds[hold_id] = HoldState(hold_id, "PENDING", amount, 0, 0)
        self.sources[hold_id], self.destinations[hold_id] = source, destination
        available = self.wallets[source].available
        plan = plan_postings(
            [Intent(hold_id, source, destination, amount, "INR", "HOLD")], self.wallets, holds=self.holds
        )
        if not self._active(source, destination):
            assert plan.failed == {hold_id: FailureReason.WALLET_NOT_ACTIVE}
        elif amount <= available:
            assert plan.held == [hold_id] and self.holds[hold_id].status == "HELD"
        else:
            assert plan.failed == {hold_id: FailureReason.INSUFFICIENT_FUNDS}
            assert self.holds[hold_id].status == "FAILED"

    def _held(self) -> list[uuid.UUID]:
        return [h for h, state in self.holds.items() if state.status == "HELD"]

    @precondition(lambda self: self._held())
    @rule(data=st.data(), final=st.booleans())
    def accept_capture(self, data: st.DataObject, final: bool) -> None:
        """Intake: only what no other capture reserved, under the hold's lock."""
        hold_id = data.draw(st.sampled_from(self._held()))
        hold = self.holds[hold_id]
        free = hold.amount - hold.captured_amount - hold.reserved_amount
        if free <= 0 or hold.final_capture_id is not None:
            return
        amount = data.draw(st.integers(1, free))
        intent = Intent(
            uuid.uuid4(), self.sources[hold_id], self.destinations[hold_id], amount, "INR", "CAPTURE", hold_id
        )
        hold.reserved_amount += amount
        if final:
            hold.final_capture_id = intent.id
        self.pending.append(intent)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def settle_captures(self, data: st.DataObject) -> None:
        """The engine settles some of the accepted captures, in the order they were accepted."""
        count = data.draw(st.integers(1, len(self.pending)))
        batch, self.pending = self.pending[:count], self.pending[count:]
        before = {i.id: self.holds[i.hold_id].status for i in batch if i.hold_id is not None}
        plan = plan_postings(batch, self.wallets, holds=self.holds)
        for intent in batch:
            if intent.id in plan.failed:
                assert plan.failed[intent.id] in (
                    FailureReason.HOLD_NOT_ACTIVE,
                    FailureReason.HOLD_EXPIRED,
                    FailureReason.WALLET_NOT_ACTIVE,
                )
            else:
                assert before[intent.id] == "HELD"

    @precondition(lambda self: self._held())
    @rule(data=st.data(), status=st.sampled_from(["VOIDED", "EXPIRED"]))
    def end(self, data: st.DataObject, status: str) -> None:
        """A void or an expiry, as ledger.intents.holds._end does it under the hold's and wallet's locks."""
        hold = self.holds[data.draw(st.sampled_from(self._held()))]
        self.wallets[self.sources[hold.id]].hold(-hold.remaining)
        hold.status, hold.reserved_amount = status, 0

    @rule(source=st.sampled_from(WALLETS), destination=st.sampled_from(WALLETS), amount=st.integers(1, 1_500))
    def transfer(self, source: uuid.UUID, destination: uuid.UUID, amount: int) -> None:
        if source == destination:
            return
        available = self.wallets[source].available
        plan = plan_postings([Intent(uuid.uuid4(), source, destination, amount, "INR")], self.wallets)
        assert bool(plan.completed) == (amount <= available and self._active(source, destination))

    def _active(self, *wallet_ids: uuid.UUID) -> bool:
        return all(self.wallets[w].status == "ACTIVE" for w in wallet_ids)

    @rule(wallet_id=st.sampled_from(WALLETS))
    def lock_or_unlock(self, wallet_id: uuid.UUID) -> None:
        wallet = self.wallets[wallet_id]
        wallet.status = "LOCKED" if wallet.status == "ACTIVE" else "ACTIVE"

    @invariant()
    def a_held_hold_reserves_exactly_its_captures_on_their_way(self) -> None:
        for hold in self.holds.values():
            if hold.status == "HELD":
                assert hold.reserved_amount == sum(i.amount for i in self.pending if i.hold_id == hold.id)

    @invariant()
    def held_amounts_are_what_open_holds_keep(self) -> None:
        for wallet_id, wallet in self.wallets.items():
            expected = sum(
                h.remaining for h in self.holds.values() if h.status == "HELD" and self.sources[h.id] == wallet_id
            )
            assert wallet.held_amount == expected
            assert 0 <= wallet.held_amount <= wallet.balance

    @invariant()
    def captures_never_exceed_their_hold(self) -> None:
        for hold in self.holds.values():
            assert 0 <= hold.captured_amount <= hold.amount
            assert hold.reserved_amount >= 0
            if hold.status == "HELD":
                assert hold.captured_amount + hold.reserved_amount <= hold.amount
                assert hold.remaining > 0

    @invariant()
    def money_is_conserved(self) -> None:
        assert sum(w.balance for w in self.wallets.values()) == START * len(WALLETS)


TestHoldMachine = HoldMachine.TestCase
TestHoldMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
