"""Fraud rules in the pure plan: a transfer that trips one is held on its source and goes to review,
posting nothing; the rules count the batch's earlier intents; only plain transfers are reviewed."""

from __future__ import annotations

import uuid

from ledger.settlement.plan import Intent, WalletState, plan_postings
from ledger.settlement.review import Review, Rules, WalletHistory, tripped_rules
from models import FailureReason

A, B, C = (uuid.UUID(int=i + 1) for i in range(3))


def wallets(balance: int = 1_000) -> dict[uuid.UUID, WalletState]:
    return {w: WalletState(w, "PRIMARY", "ACTIVE", "INR", balance if w == A else 0, 0) for w in (A, B, C)}


def transfer(amount: int, destination: uuid.UUID = B, type_: str = "TRANSFER", approved: bool = False) -> Intent:
    return Intent(uuid.uuid4(), A, destination, amount, "INR", type_, approved=approved)


def review(rules: Rules, history: WalletHistory | None = None, exempt: set[uuid.UUID] | None = None) -> Review:
    return Review(rules={A: rules}, history={A: history or WalletHistory()}, exempt=exempt or set())


def test_a_stopped_transfer_is_held_and_posts_nothing():
    states = wallets()
    over, under = transfer(600), transfer(400)
    plan = plan_postings([over, under], states, review=review(Rules(review_amount_over=500)))
    assert plan.in_review == {over.id: ("review_amount_over",)}
    assert plan.completed == [under.id]
    assert [e.transaction_id for e in plan.entries] == [under.id, under.id]
    assert (states[A].balance, states[A].held_amount, states[A].available) == (600, 600, 0)


def test_the_hold_leaves_later_intents_only_what_is_available():
    states = wallets()
    stopped, after = transfer(800), transfer(300)
    plan = plan_postings([stopped, after], states, review=review(Rules(review_amount_over=500)))
    assert plan.in_review == {stopped.id: ("review_amount_over",)}
    assert plan.failed == {after.id: FailureReason.INSUFFICIENT_FUNDS}


def test_a_transfer_without_the_funds_fails_instead_of_waiting_in_review():
    states = wallets(100)
    short = transfer(600)
    plan = plan_postings([short], states, review=review(Rules(review_amount_over=500)))
    assert plan.failed == {short.id: FailureReason.INSUFFICIENT_FUNDS} and not plan.in_review


def test_the_rate_rule_counts_earlier_intents_of_the_same_batch():
    states = wallets()
    batch = [transfer(10) for _ in range(5)]
    rules = Rules(max_transfers_per_wallet_per_10_minutes=3)
    plan = plan_postings(batch, states, review=review(rules, WalletHistory(transfers_last_10_minutes=1)))
    assert plan.completed == [i.id for i in batch[:2]]
    assert list(plan.in_review) == [i.id for i in batch[2:]]
    assert states[A].held_amount == 30


def test_a_new_destination_is_known_once_paid_in_the_batch():
    states = wallets()
    small, big_to_known, big_to_new = transfer(50, B), transfer(200, B), transfer(200, C)
    plan = plan_postings(
        [small, big_to_known, big_to_new], states, review=review(Rules(new_destination_amount_over=100))
    )
    assert plan.completed == [small.id, big_to_known.id]
    assert plan.in_review == {big_to_new.id: ("new_destination_amount_over",)}


def test_every_rule_tripped_is_named():
    rules = Rules(
        review_amount_over=100,
        max_transfers_per_wallet_per_10_minutes=1,
        new_destination_amount_over=100,
        amount_over_wallet_p95_factor=2,
    )
    history = WalletHistory(transfers_last_10_minutes=1, p95_amount=50)
    assert tripped_rules(rules, history, B, 101) == (
        "review_amount_over",
        "max_transfers_per_wallet_per_10_minutes",
        "new_destination_amount_over",
        "amount_over_wallet_p95_factor",
    )
    assert tripped_rules(rules, WalletHistory(paid_destinations={B}, p95_amount=50), B, 100) == ()
    # Without enough history there is no p95, and the factor rule does not apply.
    assert tripped_rules(Rules(amount_over_wallet_p95_factor=2), WalletHistory(), B, 10**9) == ()


def test_only_plain_transfers_not_yet_approved_are_reviewed():
    rules = Rules(review_amount_over=1)
    paying = transfer(10)
    kinds = [transfer(10, type_="WITHDRAWAL"), transfer(10, type_="REFUND"), transfer(10, approved=True), paying]
    plan = plan_postings(kinds, wallets(), review=review(rules, exempt={paying.id}))
    assert not plan.in_review and len(plan.completed) == 4
