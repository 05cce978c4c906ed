"""Multilateral netting, pure: one figure per organisation and currency that sums to zero."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.clearing.netting import Obligation, currency_totals, net_positions

ORGS = [uuid.UUID(int=i + 1) for i in range(6)]
A, B, C = ORGS[:3]


def test_a_cycle_nets_to_nothing():
    positions = net_positions(
        [Obligation(A, B, "INR", 100), Obligation(B, C, "INR", 100), Obligation(C, A, "INR", 100)]
    )
    assert {key: p.net_position for key, p in positions.items()} == {(A, "INR"): 0, (B, "INR"): 0, (C, "INR"): 0}
    assert currency_totals([], positions.values()) == []


def test_two_ways_net_to_the_difference():
    obligations = [Obligation(A, B, "INR", 100), Obligation(B, A, "INR", 40), Obligation(A, B, "USD", 7)]
    positions = net_positions(obligations)
    assert positions[(A, "INR")].net_position == 60
    assert positions[(B, "INR")].net_position == -60
    assert (positions[(A, "INR")].sent_amount, positions[(A, "INR")].received_amount) == (100, 40)
    assert positions[(A, "INR")].transfer_count == 2
    assert positions[(B, "USD")].net_position == -7
    totals = {t.currency: t for t in currency_totals(obligations, positions.values())}
    assert (totals["INR"].gross_amount, totals["INR"].settled_amount, totals["INR"].transfer_count) == (140, 60, 2)
    assert (totals["USD"].gross_amount, totals["USD"].settled_amount) == (7, 7)


def test_refuses_obligations_that_cannot_exist():
    with pytest.raises(AssertionError):
        net_positions([Obligation(A, A, "INR", 5)])
    with pytest.raises(AssertionError):
        net_positions([Obligation(A, B, "INR", 0)])


obligation = st.builds(
    Obligation,
    st.sampled_from(ORGS),
    st.sampled_from(ORGS),
    st.sampled_from(["INR", "USD"]),
    st.integers(min_value=1, max_value=10**12),
).filter(lambda o: o.debtor_organization_id != o.creditor_organization_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(obligation, max_size=60))
def test_positions_match_a_naive_bilateral_sum_and_sum_to_zero(obligations):
    positions = net_positions(obligations)
    expected: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for o in obligations:
        expected[(o.debtor_organization_id, o.currency)] += o.amount
        expected[(o.creditor_organization_id, o.currency)] -= o.amount
    assert {key: p.net_position for key, p in positions.items()} == dict(expected)
    for currency in ("INR", "USD"):
        assert sum(p.net_position for p in positions.values() if p.currency == currency) == 0
    totals = currency_totals(obligations, positions.values())
    for total in totals:
        assert 0 <= total.settled_amount <= total.gross_amount
        assert total.settled_amount == sum(
            -p.net_position for p in positions.values() if p.currency == total.currency and p.net_position < 0
        )
    assert sum(t.transfer_count for t in totals) == len(obligations)
