"""Risk controls: an intent over one of its organisation's limits ends FAILED (RISK_LIMIT), posts nothing,
and leaves one audit row; intents within the limits, and organisations without any, are untouched."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ledger.settlement.posting import settle_transfers
from models.db import session_factory

LIMITS_PATH = "/organizations/risk-limits"
NO_LIMITS = {
    "transfer_amount_max": None,
    "daily_outgoing_max_per_wallet": None,
    "transfers_per_minute_max_per_wallet": None,
}


def put_limits(api, user, **body: Any):
    return api.request("PUT", LIMITS_PATH, user, json=body)


def set_limits(api, user, **body: Any) -> dict[str, Any]:
    response = put_limits(api, user, **body)
    assert response.status_code == 200, response.json
    return dict(response.json)


def audit_rows(api, owner, action: str) -> list[dict[str, Any]]:
    response = api.get(f"/audit-logs?action={action}&limit=500", owner)
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def settled(api, user, response) -> dict[str, Any]:
    assert response.status_code == 202, response.json
    return api.wait_final(user, response.json["id"])


def assert_refused(api, owner, final: dict[str, Any], limit: str, limit_value: int, attempted: int) -> None:
    assert (final["status"], final["failure_reason"]) == ("FAILED", "RISK_LIMIT"), final
    assert api.get(f"/transactions/{final['id']}/ledger", owner).json["items"] == []
    rows = [r for r in audit_rows(api, owner, "transaction.risk_limit") if r["target_id"] == final["id"]]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["organization_id"] == owner.organization_id
    assert row["actor_id"] is None and row["actor_label"] == "system:risk"
    assert row["target_type"] == "transaction"
    assert (row["after"]["limit"], row["after"]["limit_value"], row["after"]["attempted"]) == (
        limit,
        limit_value,
        attempted,
    )
    assert row["after"]["source_wallet_id"] == final["source_wallet_id"]


def test_largest_single_transfer(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_limits(api, owner, transfer_amount_max=500)

    over = settled(api, owner, api.transfer(owner, source, destination, 501))
    assert_refused(api, owner, over, "transfer_amount_max", 500, 501)
    assert settled(api, owner, api.transfer(owner, source, destination, 500))["status"] == "COMPLETED"
    # Deposits come from the SYSTEM treasury: exempt, however large.
    deposit = api.deposit(owner, source, 1_000_000)
    assert api.wait_final(owner, deposit["id"])["status"] == "COMPLETED"
    # Withdrawals are outgoing: limited like transfers.
    withdrawal = settled(api, owner, api.post(f"/wallets/{source}/withdraw", owner, json={"amount": 600}))
    assert_refused(api, owner, withdrawal, "transfer_amount_max", 500, 600)

    assert api.wallet(owner, source)["balance"] == 10_000 - 500 + 1_000_000
    assert api.wallet(owner, destination)["balance"] == 500
    assert len(audit_rows(api, owner, "transaction.risk_limit")) == 2


def test_daily_outgoing_total_per_wallet(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    other_source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_limits(api, owner, daily_outgoing_max_per_wallet=1_000)

    assert settled(api, owner, api.transfer(owner, source, destination, 600))["status"] == "COMPLETED"
    over = settled(api, owner, api.transfer(owner, source, destination, 500))
    assert_refused(api, owner, over, "daily_outgoing_max_per_wallet", 1_000, 1_100)
    assert settled(api, owner, api.transfer(owner, source, destination, 400))["status"] == "COMPLETED"
    # The wallet has sent its 1,000 today: a withdrawal of 1 is over too.
    withdrawal = settled(api, owner, api.post(f"/wallets/{source}/withdraw", owner, json={"amount": 1}))
    assert_refused(api, owner, withdrawal, "daily_outgoing_max_per_wallet", 1_000, 1_001)
    # Per wallet: another wallet of the organisation has its own allowance.
    assert settled(api, owner, api.transfer(owner, other_source, destination, 1_000))["status"] == "COMPLETED"

    assert api.wallet(owner, source)["balance"] == 10_000 - 1_000
    assert len(audit_rows(api, owner, "transaction.risk_limit")) == 2


def test_transfers_per_minute_per_wallet(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_limits(api, owner, transfers_per_minute_max_per_wallet=2)

    for _ in range(2):
        assert settled(api, owner, api.transfer(owner, source, destination, 10))["status"] == "COMPLETED"
    over = settled(api, owner, api.transfer(owner, source, destination, 10))
    assert_refused(api, owner, over, "transfers_per_minute_max_per_wallet", 2, 3)
    # Incoming transfers are not counted: the destination may still send.
    assert settled(api, owner, api.transfer(owner, destination, source, 5))["status"] == "COMPLETED"
    assert api.wallet(owner, source)["balance"] == 10_000 - 20 + 5


def _settle_held(ids: list[str]) -> None:
    with session_factory().begin() as session:
        settle_transfers(session, [uuid.UUID(i) for i in ids])


def test_intents_of_one_batch_count_against_each_other(api, unpublished):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    busy = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    set_limits(api, owner, transfer_amount_max=500, daily_outgoing_max_per_wallet=1_000)
    unpublished.start()
    amounts = [600, 500, 500, 1]  # too big (and so not charged), fits, fits, over the day's total
    ids = [api.transfer(owner, source, destination, amount).json["id"] for amount in amounts]
    _settle_held(ids)  # a worker draining its backlog may take some first: the outcome is the same

    finals = [api.wait_final(owner, i) for i in ids]
    assert [f["status"] for f in finals] == ["FAILED", "COMPLETED", "COMPLETED", "FAILED"]
    assert_refused(api, owner, finals[0], "transfer_amount_max", 500, 600)
    assert_refused(api, owner, finals[3], "daily_outgoing_max_per_wallet", 1_000, 1_001)
    assert api.wallet(owner, source)["balance"] == 10_000 - 1_000

    set_limits(api, owner, transfers_per_minute_max_per_wallet=3)
    ids = [api.transfer(owner, busy, destination, 10).json["id"] for _ in range(4)]
    _settle_held(ids)
    finals = [api.wait_final(owner, i) for i in ids]
    assert [f["status"] for f in finals] == ["COMPLETED"] * 3 + ["FAILED"]
    assert_refused(api, owner, finals[3], "transfers_per_minute_max_per_wallet", 3, 4)


def test_no_limits_configured_changes_nothing(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000_000)
    destination = api.create_wallet(owner)
    assert api.get(LIMITS_PATH, owner).json == {
        "organization_id": owner.organization_id,
        **NO_LIMITS,
        "updated_at": None,
        "updated_by": None,
    }
    for _ in range(3):
        assert settled(api, owner, api.transfer(owner, source, destination, 300_000))["status"] == "COMPLETED"
    set_limits(api, owner, transfer_amount_max=1)
    cleared = set_limits(api, owner)  # an empty PUT removes them all
    assert {name: cleared[name] for name in NO_LIMITS} == NO_LIMITS
    assert settled(api, owner, api.transfer(owner, source, destination, 100_000))["status"] == "COMPLETED"
    assert audit_rows(api, owner, "transaction.risk_limit") == []


def test_owner_and_admin_set_limits_members_only_read_them(api, db):
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    member = api.add_user(owner, "MEMBER")
    assert api.get(LIMITS_PATH).status_code == 401
    assert put_limits(api, member, transfer_amount_max=5).status_code == 403
    assert set_limits(api, owner, transfer_amount_max=5_000)["transfer_amount_max"] == 5_000
    answer = set_limits(api, admin, daily_outgoing_max_per_wallet=9_000, transfers_per_minute_max_per_wallet=10)
    assert answer["updated_by"] == admin.id and answer["updated_at"]
    read = api.get(LIMITS_PATH, member)
    assert read.status_code == 200
    assert read.json == answer
    assert (read.json["transfer_amount_max"], read.json["daily_outgoing_max_per_wallet"]) == (None, 9_000)

    rows = audit_rows(api, owner, "risk_limits.updated")
    assert [r["actor_id"] for r in rows] == [admin.id, owner.id]  # newest first; the member's 403 left none
    assert rows[0]["target_id"] == owner.organization_id
    assert rows[0]["before"] == {**NO_LIMITS, "transfer_amount_max": 5_000}
    assert rows[0]["after"] == {
        **NO_LIMITS,
        "daily_outgoing_max_per_wallet": 9_000,
        "transfers_per_minute_max_per_wallet": 10,
    }
    stored = db.scalar(
        "SELECT daily_outgoing_max_per_wallet FROM risk_limits WHERE organization_id = :org", org=owner.organization_id
    )
    assert stored == 9_000


@pytest.mark.parametrize(
    "body",
    [
        {"transfer_amount_max": 0},
        {"transfer_amount_max": -100},
        {"transfer_amount_max": 10.5},
        {"daily_outgoing_max_per_wallet": "1000"},
        {"daily_outgoing_max_per_wallet": True},
        {"transfers_per_minute_max_per_wallet": 0},
        {"transfers_per_minute_max_per_wallet": 2.5},
        {"transfers_per_minute_max_per_wallet": -1},
        {"transfer_amount_max": 100, "organization_id": str(uuid.uuid4())},
    ],
)
def test_bad_bodies_are_refused_and_write_nothing(api, body):
    owner = api.signup()
    before = set_limits(api, owner, transfer_amount_max=700)
    response = put_limits(api, owner, **body)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"]
    assert api.get(LIMITS_PATH, owner).json == before
    assert len(audit_rows(api, owner, "risk_limits.updated")) == 1
    # Not a JSON object at all.
    assert api.request("PUT", LIMITS_PATH, owner, json=[1]).status_code == 422


def test_one_organisations_limits_never_touch_another(api):
    a, b = api.signup("Risk A"), api.signup("Risk B")
    a_wallet, b_wallet = api.funded_wallet(a, 10_000), api.funded_wallet(b, 10_000)
    a_other, b_other = api.create_wallet(a), api.create_wallet(b)
    set_limits(
        api, a, transfer_amount_max=100, daily_outgoing_max_per_wallet=150, transfers_per_minute_max_per_wallet=1
    )

    # B reads and writes only its own limits.
    assert api.get(LIMITS_PATH, b).json == {
        "organization_id": b.organization_id,
        **NO_LIMITS,
        "updated_at": None,
        "updated_by": None,
    }
    for _ in range(3):
        assert settled(api, b, api.transfer(b, b_wallet, b_other, 1_000))["status"] == "COMPLETED"
    set_limits(api, b, transfer_amount_max=5_000)
    assert api.get(LIMITS_PATH, a).json["transfer_amount_max"] == 100

    # Across organisations, the sender's limits apply: B may send A more than A's limit, A may not.
    assert settled(api, b, api.transfer(b, b_wallet, a_other, 4_000))["status"] == "COMPLETED"
    refused = settled(api, a, api.transfer(a, a_wallet, b_other, 101))
    assert (refused["status"], refused["failure_reason"]) == ("FAILED", "RISK_LIMIT")
    assert audit_rows(api, b, "transaction.risk_limit") == []
    assert len(audit_rows(api, a, "transaction.risk_limit")) == 1
    assert [r["target_id"] for r in audit_rows(api, b, "risk_limits.updated")] == [b.organization_id]
