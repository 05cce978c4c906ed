"""The audit trail: every sensitive action, with who, what, from where and which request; append-only."""

from __future__ import annotations

import os

import psycopg
import pytest


def audit_rows(api, user, **query: str) -> list[dict]:
    params = "&".join(f"{k}={v}" for k, v in {"limit": "500", **query}.items())
    response = api.get(f"/audit-logs?{params}", user)
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def test_a_session_leaves_a_complete_trail(api, unpublished):
    unpublished.start()
    owner = api.signup()
    assert api.post("/auth/login", json={"email": owner.email, "password": "wrong password"}).status_code == 401
    member = api.add_user(owner, "MEMBER")
    wallet = api.create_wallet(owner)
    other = api.create_wallet(owner)
    assert (
        api.post(f"/wallets/{wallet}/members", owner, json={"user_id": member.id, "role": "VIEWER"}).status_code == 201
    )
    deposit = api.deposit(owner, wallet, 1_000)
    transfer = api.transfer(owner, wallet, other, 100, key="audit-key")
    api.transfer(owner, wallet, other, 100, key="audit-key")  # a replay records nothing new
    # The deposit was never published, so the transfer cannot complete; at worst a busy worker's
    # backlog drain fails it (INSUFFICIENT_FUNDS) first, and the cancel is refused and unaudited.
    cancel = api.post(f"/transactions/{transfer.json['id']}/cancel", owner, headers={"X-Request-ID": "cancel-req-1"})
    assert cancel.status_code in (200, 409)
    withdrawal = api.post(f"/wallets/{other}/withdraw", owner, json={"amount": 1})
    assert withdrawal.status_code == 202
    assert api.patch(f"/wallets/{other}", owner, json={"status": "LOCKED"}).status_code == 200
    assert api.post("/auth/logout", member).status_code == 200

    rows = audit_rows(api, owner)
    actions = [r["action"] for r in reversed(rows)]  # oldest first
    assert actions == [
        "auth.signup",
        "auth.login_failed",
        "user.created",
        "auth.login_succeeded",  # the new member logs in (tests.client.add_user)
        "wallet.created",
        "wallet.created",
        "wallet.member_granted",
        "deposit.created",
        "transfer.created",
        *(["transaction.cancelled"] if cancel.status_code == 200 else []),
        "withdrawal.created",
        "wallet.status_changed",
        "auth.logout",
    ]
    by_action = {r["action"]: r for r in rows}
    failed = by_action["auth.login_failed"]
    assert failed["actor_id"] is None and failed["actor_label"] == owner.email and failed["target_id"] == owner.id
    granted = by_action["wallet.member_granted"]
    assert granted["target_id"] == wallet and granted["after"]["user_id"] == member.id
    assert granted["after"]["role"] == "VIEWER"
    status = by_action["wallet.status_changed"]
    assert (status["target_id"], status["before"], status["after"]) == (
        other,
        {"status": "ACTIVE"},
        {"status": "LOCKED"},
    )
    assert by_action["deposit.created"]["target_id"] == deposit["id"]
    assert by_action["transfer.created"]["after"]["amount"] == 100
    if cancel.status_code == 200:
        cancelled = by_action["transaction.cancelled"]
        assert cancelled["target_id"] == transfer.json["id"] and cancelled["request_id"] == "cancel-req-1"
        assert cancelled["before"] == {"status": "PENDING"} and cancelled["after"] == {"status": "CANCELLED"}
    assert by_action["auth.logout"]["actor_id"] == member.id
    for row in rows:
        assert row["organization_id"] == owner.organization_id
        assert row["source_address"] == "127.0.0.1"
        assert row["request_id"]
        assert row["occurred_at"]
    assert by_action["wallet.created"]["actor_id"] == owner.id
    # The request id of a row is the one the API answered with.
    response = api.post("/wallets/", owner, json={"type": "BONUS", "currency": "INR"})
    [row] = audit_rows(api, owner, target_id=response.json["id"])
    assert row["request_id"] == response.headers["X-Request-ID"]


def test_filters_and_pages(api):
    owner = api.signup()
    wallets = [api.create_wallet(owner) for _ in range(3)]
    created = audit_rows(api, owner, action="wallet.created")
    assert [r["target_id"] for r in created] == list(reversed(wallets))
    assert {r["action"] for r in audit_rows(api, owner, action="wallet.")} == {"wallet.created"}
    assert audit_rows(api, owner, actor_id=owner.id, action="auth.signup")[0]["target_id"] == owner.organization_id
    first = api.get("/audit-logs?limit=2", owner).json
    second = api.get(f"/audit-logs?limit=2&cursor={first['next_cursor']}", owner).json
    ids = [r["id"] for r in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 4
    assert ids == [r["id"] for r in audit_rows(api, owner)][:4]


def test_no_other_organisation_and_no_member_sees_the_log(api):
    owner = api.signup()
    wallet = api.create_wallet(owner)
    stranger = api.signup()
    assert audit_rows(api, stranger, target_id=wallet) == []
    assert all(r["organization_id"] == stranger.organization_id for r in audit_rows(api, stranger))
    member = api.add_user(owner, "MEMBER")
    assert api.get("/audit-logs", member).status_code == 403
    assert api.get("/audit-logs").status_code == 401


def test_a_refused_action_leaves_no_row(api):
    owner = api.signup()
    wallet = api.funded_wallet(owner, 100)
    before = len(audit_rows(api, owner))
    assert api.patch(f"/wallets/{wallet}", owner, json={"status": "CLOSED"}).status_code == 409
    assert len(audit_rows(api, owner)) == before


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs", "TRUNCATE audit_logs"]
)
def test_the_database_refuses_to_change_the_log(api, statement):
    api.signup()
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection, pytest.raises(psycopg.errors.RestrictViolation):
        connection.execute(statement)
