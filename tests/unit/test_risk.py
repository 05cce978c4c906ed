"""Risk limits, pure: the budget each intent is charged to, the plan it refuses, the windows, the PUT body."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from ledger.settlement.plan import Intent, WalletState, plan_postings
from ledger.settlement.risk import Limits, RiskBudget, Usage, WalletRisk, breach, window_starts
from models import FailureReason
from web.schemas.risk import TRANSFERS_PER_MINUTE_LIMIT_MAX, RiskLimitsUpdateSchema

ORG = uuid.UUID(int=99)
A, B, TREASURY = (uuid.UUID(int=i) for i in (1, 2, 3))


def wallets(balance: int = 10_000) -> dict[uuid.UUID, WalletState]:
    return {
        A: WalletState(A, "PRIMARY", "ACTIVE", "INR", balance, 0),
        B: WalletState(B, "PRIMARY", "ACTIVE", "INR", 0, 0),
        TREASURY: WalletState(TREASURY, "SYSTEM", "ACTIVE", "INR", 0, 0),
    }


def intent(amount: int, source: uuid.UUID = A, destination: uuid.UUID = B, type_: str = "TRANSFER") -> Intent:
    return Intent(uuid.uuid4(), source, destination, amount, "INR", type_)


def budget(limits: Limits, usage: Usage | None = None) -> RiskBudget:
    return RiskBudget(wallets={A: WalletRisk(ORG, limits)}, usage={A: usage} if usage else {})


@pytest.mark.parametrize(
    ("limits", "usage", "amount", "expected"),
    [
        (Limits(transfer_amount_max=500), Usage(), 500, None),
        (Limits(transfer_amount_max=500), Usage(), 501, ("transfer_amount_max", 500, 501)),
        (Limits(daily_outgoing_max_per_wallet=1_000), Usage(outgoing_today=600), 400, None),
        (
            Limits(daily_outgoing_max_per_wallet=1_000),
            Usage(outgoing_today=600),
            401,
            ("daily_outgoing_max_per_wallet", 1_000, 1_001),
        ),
        (Limits(transfers_per_minute_max_per_wallet=3), Usage(transfers_last_minute=2), 1, None),
        (
            Limits(transfers_per_minute_max_per_wallet=3),
            Usage(transfers_last_minute=3),
            1,
            ("transfers_per_minute_max_per_wallet", 3, 4),
        ),
        (Limits(), Usage(outgoing_today=10**12, transfers_last_minute=10**6), 10**12, None),
    ],
)
def test_breach_names_the_limit_its_value_and_what_was_attempted(limits, usage, amount, expected):
    assert breach(limits, usage, amount) == expected


def test_intents_of_one_plan_count_against_each_other():
    wallet_states = wallets()
    risk = budget(Limits(daily_outgoing_max_per_wallet=1_000))
    first, second, third = intent(400), intent(400), intent(400)
    plan = plan_postings([first, second, third], wallet_states, risk)

    assert plan.completed == [first.id, second.id]
    assert plan.failed == {third.id: FailureReason.RISK_LIMIT}
    assert {e.transaction_id for e in plan.entries} == {first.id, second.id}
    assert wallet_states[A].balance == 10_000 - 800
    found = risk.breaches[third.id]
    assert (found.limit, found.limit_value, found.attempted, found.organization_id) == (
        "daily_outgoing_max_per_wallet",
        1_000,
        1_200,
        ORG,
    )
    assert risk.usage[A] == Usage(outgoing_today=800, transfers_last_minute=2)


def test_only_intents_that_complete_are_charged():
    wallet_states = wallets(balance=750)
    risk = budget(Limits(transfer_amount_max=500, transfers_per_minute_max_per_wallet=2))
    too_big, short_of_funds, ok, also_ok, one_too_many = intent(600), intent(800), intent(300), intent(400), intent(1)
    # short_of_funds: the balance is 750, and 800 is also over the amount limit; funds are checked first.
    plan = plan_postings([too_big, short_of_funds, ok, also_ok, one_too_many], wallet_states, risk)

    assert plan.completed == [ok.id, also_ok.id]
    assert plan.failed == {
        too_big.id: FailureReason.RISK_LIMIT,
        short_of_funds.id: FailureReason.INSUFFICIENT_FUNDS,
        one_too_many.id: FailureReason.RISK_LIMIT,
    }
    assert set(risk.breaches) == {too_big.id, one_too_many.id}
    assert risk.breaches[one_too_many.id].limit == "transfers_per_minute_max_per_wallet"


def test_wallets_without_limits_and_no_budget_change_nothing():
    big = intent(9_000)
    deposit = intent(10**9, source=TREASURY, destination=A, type_="DEPOSIT")  # SYSTEM wallets are never in a budget
    risk = RiskBudget()
    assert plan_postings([big, deposit], wallets(), risk).completed == [big.id, deposit.id]
    assert risk.breaches == {} and risk.usage == {}
    assert plan_postings([intent(9_000)], wallets()).completed  # the default: no budget at all


def test_windows_are_the_utc_day_and_the_last_sixty_seconds():
    india = timezone(timedelta(hours=5, minutes=30))
    now = datetime(2024, 3, 2, 3, 0, tzinfo=india)  # 2024-03-01 21:30 UTC
    day_start, minute_start = window_starts(now)
    assert day_start == datetime(2024, 3, 1, tzinfo=UTC)
    assert minute_start == now - timedelta(seconds=60)


@pytest.mark.parametrize(
    "body",
    [
        {"transfer_amount_max": 0},
        {"transfer_amount_max": -5},
        {"transfer_amount_max": 10.5},
        {"transfer_amount_max": 10.0},
        {"transfer_amount_max": "100"},
        {"transfer_amount_max": True},
        {"daily_outgoing_max_per_wallet": 0},
        {"daily_outgoing_max_per_wallet": 10**20},
        {"transfers_per_minute_max_per_wallet": 0},
        {"transfers_per_minute_max_per_wallet": TRANSFERS_PER_MINUTE_LIMIT_MAX + 1},
        {"organization_id": str(uuid.uuid4())},
    ],
)
def test_bad_limit_bodies_are_refused(body):
    with pytest.raises(ValidationError):
        RiskLimitsUpdateSchema().load(body)


def test_limits_are_optional_and_nullable():
    assert RiskLimitsUpdateSchema().load({}) == {
        "transfer_amount_max": None,
        "daily_outgoing_max_per_wallet": None,
        "transfers_per_minute_max_per_wallet": None,
    }
    loaded = RiskLimitsUpdateSchema().load({"transfer_amount_max": 500, "transfers_per_minute_max_per_wallet": None})
    assert loaded["transfer_amount_max"] == 500 and loaded["transfers_per_minute_max_per_wallet"] is None
