"""The pure posting plan: applied in order, each intent on its own, money conserved."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.settlement.plan import Intent, WalletState, plan_postings
from models import Direction, FailureReason

WALLET_IDS = [uuid.UUID(int=i + 1) for i in range(5)]


def wallet(id_: uuid.UUID, balance: int, *, type_: str = "PRIMARY", status: str = "ACTIVE", currency: str = "INR"):
    return WalletState(id=id_, type=type_, status=status, currency=currency, balance=balance, version=0)


def intent(
    source: uuid.UUID, destination: uuid.UUID, amount: int, currency: str = "INR", type_: str = "TRANSFER"
) -> Intent:
    return Intent(uuid.uuid4(), source, destination, amount, currency, type_)


def test_each_intent_sees_the_balances_left_by_the_ones_before():
    a, b = WALLET_IDS[:2]
    wallets = {a: wallet(a, 100), b: wallet(b, 0)}
    first, second, third = intent(a, b, 60), intent(a, b, 60), intent(b, a, 60)
    plan = plan_postings([first, second, third], wallets)

    assert plan.completed == [first.id, third.id]
    assert plan.failed == {second.id: FailureReason.INSUFFICIENT_FUNDS}
    assert [(e.wallet_id, e.direction, e.balance_after, e.wallet_version) for e in plan.entries] == [
        (a, Direction.DEBIT, 40, 1),
        (b, Direction.CREDIT, 60, 1),
        (b, Direction.DEBIT, 0, 2),
        (a, Direction.CREDIT, 100, 2),
    ]


def test_refusals_are_named():
    a, b, c = WALLET_IDS[:3]
    wallets = {a: wallet(a, 100), b: wallet(b, 0, status="LOCKED"), c: wallet(c, 0, currency="USD")}
    locked, mismatch = intent(a, b, 1), intent(a, c, 1)
    plan = plan_postings([locked, mismatch], wallets)
    assert plan.failed == {locked.id: FailureReason.WALLET_NOT_ACTIVE, mismatch.id: FailureReason.CURRENCY_MISMATCH}
    assert plan.entries == []
    assert wallets[a].balance == 100


def test_system_wallets_may_go_negative():
    treasury, user = WALLET_IDS[:2]
    wallets = {treasury: wallet(treasury, 0, type_="SYSTEM"), user: wallet(user, 0)}
    plan = plan_postings([intent(treasury, user, 500, type_="DEPOSIT")], wallets)
    assert len(plan.completed) == 1
    assert wallets[treasury].balance == -500


def test_only_a_deposit_or_a_withdrawal_names_a_system_wallet_and_only_on_the_treasury_side():
    treasury, clearing, user = WALLET_IDS[:3]
    wallets = {
        treasury: wallet(treasury, 0, type_="SYSTEM"),
        clearing: wallet(clearing, 0, type_="SYSTEM"),
        user: wallet(user, 1_000),
    }
    allowed = [intent(treasury, user, 5, type_="DEPOSIT"), intent(user, treasury, 5, type_="WITHDRAWAL")]
    refused = [
        intent(treasury, user, 5),  # a transfer out of the treasury
        intent(user, clearing, 5),  # a transfer into a clearing wallet
        intent(user, treasury, 5, type_="DEPOSIT"),  # a deposit the wrong way round
        intent(treasury, user, 5, type_="WITHDRAWAL"),
        intent(treasury, clearing, 5, type_="DEPOSIT"),  # a deposit into a SYSTEM wallet
        intent(user, clearing, 5, type_="REFUND"),  # any other kind of intent
    ]
    plan = plan_postings([*allowed, *refused], wallets)
    assert plan.completed == [i.id for i in allowed]
    assert plan.failed == {i.id: FailureReason.SYSTEM_WALLET for i in refused}
    assert (wallets[treasury].balance, wallets[clearing].balance, wallets[user].balance) == (0, 0, 1_000)


transfers = st.lists(
    st.tuples(st.sampled_from(WALLET_IDS), st.sampled_from(WALLET_IDS), st.integers(1, 500)).filter(
        lambda t: t[0] != t[1]
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(openings=st.lists(st.integers(0, 1_000), min_size=5, max_size=5), moves=transfers)
def test_money_is_conserved_and_chains_are_unbroken(openings, moves):
    wallets = {w: wallet(w, opening) for w, opening in zip(WALLET_IDS, openings, strict=True)}
    plan = plan_postings([intent(s, d, amount) for s, d, amount in moves], wallets)

    assert sum(w.balance for w in wallets.values()) == sum(openings)
    assert all(w.balance >= 0 for w in wallets.values())
    assert len(plan.completed) + len(plan.failed) == len(moves)
    for wallet_id, opening in zip(WALLET_IDS, openings, strict=True):
        chain = [e for e in plan.entries if e.wallet_id == wallet_id]
        balance = opening
        for version, entry in enumerate(chain, start=1):
            balance += entry.amount if entry.direction is Direction.CREDIT else -entry.amount
            assert (entry.balance_after, entry.wallet_version) == (balance, version)
        assert wallets[wallet_id].balance == balance
        assert wallets[wallet_id].version == len(chain)
