"""Refusals leave a trace: a 403, and a 404 for an object that exists but is not the caller's, are
audited for the caller's organisation (at most a bounded number per caller per minute); failed logins,
also for emails nobody has, are listed for platform operators."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.client import PASSWORD


def denials(api, admin, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"action": "access.denied", **filters}.items())
    response = api.get(f"/audit-logs?{query}&limit=500", admin)
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def denial_metric(api, recorded: str) -> float:
    text = api.app.test_client().get("/metrics").get_data(as_text=True)
    found = re.findall(r"^vaultcraft_access_denials_total{([^}]*)} ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(value) for labels, value in found if f'recorded="{recorded}"' in labels)


def mentions(rows: list[dict[str, Any]], *needles: str) -> bool:
    return any(needle in json.dumps(rows) for needle in needles)


def test_a_members_403_leaves_one_row_for_its_owner_and_admins(api):
    owner = api.signup("Denied Member Org")
    admin, member = api.add_user(owner, "ADMIN"), api.add_user(owner)
    wallet = api.create_wallet(member)

    refused = api.post(f"/wallets/{wallet}/deposit", member, json={"amount": 100})
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "ROLE_REQUIRED")

    for reader in (owner, admin):
        [row] = denials(api, reader)
        assert (row["actor_id"], row["organization_id"]) == (member.id, owner.organization_id)
        assert (row["target_type"], row["target_id"]) == ("wallet", wallet)
        assert row["source_address"] == "127.0.0.1" and row["request_id"] == refused.headers["X-Request-ID"]
        assert row["after"] == {
            "status": 403,
            "code": "ROLE_REQUIRED",
            "attempted": "POST /api/v1/wallets/{wallet_id}/deposit",
        }
    # The member cannot read the trail (another 403, itself audited: the second row).
    assert api.get("/audit-logs", member).status_code == 403
    assert [r["after"]["attempted"] for r in denials(api, owner)] == [
        "GET /api/v1/audit-logs",
        "POST /api/v1/wallets/{wallet_id}/deposit",
    ]


def test_a_cross_tenant_probe_leaves_one_row_for_the_prober_and_nothing_for_the_target(api):
    victim = api.signup("Probed")
    wallet = api.funded_wallet(victim, 1_000)
    prober = api.signup("Prober")
    colleague = api.add_user(prober, "ADMIN")

    probe = api.get(f"/wallets/{wallet}", prober)
    assert (probe.status_code, probe.json["error"]["code"]) == (404, "WALLET_NOT_FOUND")
    # A 404 for an id that names nothing is not a probe of anyone: no row.
    assert api.get(f"/wallets/{uuid.uuid4()}", prober).status_code == 404

    for reader in (prober, colleague):
        [row] = denials(api, reader)
        assert (row["actor_id"], row["organization_id"]) == (prober.id, prober.organization_id)
        assert (row["target_type"], row["target_id"], row["source_address"]) == ("wallet", wallet, "127.0.0.1")
        assert row["after"] == {
            "status": 404,
            "code": "WALLET_NOT_FOUND",
            "attempted": "GET /api/v1/wallets/{wallet_id}",
        }
    # The probed organisation learns nothing of the prober from its trail.
    everything = api.get("/audit-logs?limit=500", victim).json["items"]
    assert not mentions(everything, prober.id, prober.organization_id, prober.email)
    assert denials(api, victim) == []


def test_a_hundred_probes_leave_at_most_the_limit_and_count_the_rest(api, app):
    limit = int(app.config["AUDIT_DENIALS_PER_ACTOR_PER_MINUTE"])
    assert 0 < limit < 100
    victim = api.signup("Flooded")
    wallet = api.funded_wallet(victim, 1_000)
    prober = api.signup("Flooder")
    dropped_before = denial_metric(api, "false")

    for _ in range(100):
        assert api.post(f"/wallets/{wallet}/withdraw", prober, json={"amount": 1}).status_code == 404

    rows = denials(api, prober)
    assert len(rows) == limit
    assert {(r["target_id"], r["after"]["code"]) for r in rows} == {(wallet, "WALLET_NOT_FOUND")}
    assert denial_metric(api, "false") - dropped_before == 100 - limit
    # Another caller has an allowance of its own.
    other = api.add_user(prober, "ADMIN")
    assert api.get(f"/wallets/{wallet}", other).status_code == 404
    assert len(denials(api, prober, actor_id=other.id)) == 1


def _failed_logins(api, operator, query: str = "") -> dict[str, Any]:
    response = api.get(f"/audit-logs/failed-logins{query}", operator)
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_failed_logins_for_unknown_emails_are_seen_by_operators_and_no_tenant(api, db):
    operator = api.operator()
    owner = api.signup("Has Failed Logins")
    stranger = f"Nobody-{uuid.uuid4().hex[:8]}@Example.com"
    for email, password in ((stranger, PASSWORD), (stranger.lower(), "guess two"), (owner.email, "wrong one")):
        assert api.post("/auth/login", json={"email": email, "password": password}).status_code == 401

    page = _failed_logins(api, operator, "?limit=3")
    wrong, unknown_again, unknown = page["items"]  # newest first
    assert (wrong["email"], wrong["reason"], wrong["organization_id"]) == (
        owner.email,
        "WRONG_PASSWORD",
        owner.organization_id,
    )
    for row in (unknown, unknown_again):
        assert (row["email"], row["reason"], row["organization_id"]) == (None, "UNKNOWN_EMAIL", None)
        assert row["source_address"] == "127.0.0.1" and row["occurred_at"]
    # The same email, however it was cased, has the same hash; another has another; the email is stored nowhere.
    assert unknown["email_hash"] == unknown_again["email_hash"] != wrong["email_hash"]
    assert re.fullmatch(r"[0-9a-f]{64}", unknown["email_hash"])
    assert (
        db.scalar(
            "SELECT count(*) FROM audit_logs WHERE lower(CAST(audit_logs AS text)) LIKE :e", e=f"%{stranger.lower()}%"
        )
        == 0
    )
    # Paginated like every list.
    first = _failed_logins(api, operator, "?limit=1")
    assert first["items"][0]["id"] == wrong["id"] and first["next_cursor"]
    second = _failed_logins(api, operator, f"?limit=1&cursor={first['next_cursor']}")
    assert second["items"][0]["id"] == unknown_again["id"]

    # No tenant sees the unknown email's attempts; the owner sees the attempt on their own account.
    refused = api.get("/audit-logs/failed-logins", owner)
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "OPERATOR_REQUIRED")
    own = api.get("/audit-logs?action=auth.login_failed", owner).json["items"]
    assert [r["target_id"] for r in own] == [owner.id]
    assert (
        db.scalar(
            "SELECT count(*) FROM audit_logs WHERE action = 'auth.login_failed' AND organization_id IS NOT NULL"
            " AND after->>'reason' = 'UNKNOWN_EMAIL'"
        )
        == 0
    )


@pytest.mark.parametrize("path", ["/audit-logs/failed-logins"])
def test_only_operators_list_failed_logins(api, path):
    assert api.get(path).status_code == 401
    owner = api.signup()
    for user in (owner, api.add_user(owner, "ADMIN"), api.add_user(owner)):
        assert api.get(path, user).status_code == 403
