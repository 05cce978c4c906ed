"""Tenants are walls: every path that takes an id answers 404 to another organisation, and changes nothing.

The paths come from the OpenAPI document, so a new endpoint with an id is covered the day it is added;
one whose id kind has no victim object here fails the suite until it gets one.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

# A body each write endpoint would accept from its rightful owner, so a 404 is about tenancy alone.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/api/v1/wallets/{wallet_id}"): {"status": "LOCKED"},
    ("post", "/api/v1/wallets/{wallet_id}/members"): {"role": "CONTRIBUTOR"},  # user_id filled in below
    ("post", "/api/v1/wallets/{wallet_id}/deposit"): {"amount": 100},
    ("post", "/api/v1/wallets/{wallet_id}/withdraw"): {"amount": 100},
    ("post", "/api/v1/p2p/requests/{request_id}/settle"): {"source_wallet_id": "filled in below"},
    ("post", "/api/vault-settlements/p2p/settle/{request_id}"): {"source_wallet_id": "filled in below"},
    ("post", "/api/v1/transactions/{transaction_id}/refund"): {"amount": 5},
    ("patch", "/api/v1/organizations/users/{user_id}"): {"active": False},
    ("patch", "/api/v1/webhooks/{webhook_id}"): {"status": "DISABLED"},
    ("post", "/api/v1/holds/{hold_id}/capture"): {"amount": 1},
    ("post", "/api/v1/wallets/{wallet_id}/monitors"): {"condition": "available_balance_below", "threshold": 5},
    ("post", "/api/v1/transactions/{transaction_id}/review"): {"decision": "REJECT"},
}


@pytest.fixture(scope="module")
def victim(app, worker):
    from tests.client import ApiClient

    api = ApiClient(app)
    owner = api.signup("Victim")
    wallet = api.funded_wallet(owner, 10_000)
    other = api.create_wallet(owner)
    completed = api.wait_final(owner, (api.transfer(owner, wallet, other, 10).json or {})["id"])
    # A P2P request the victim's friend (another organisation) owes, and a batch that settled it.
    friend = api.signup("Victim's friend")
    request = api.p2p_request(owner, friend, other, 10)
    settled = api.p2p_settle(friend, request["id"], api.funded_wallet(friend, 100)).json or {}
    paid = settled["transaction"]["id"]
    assert api.wait_final(friend, paid)["status"] == "COMPLETED"
    batch = api.run_settlement(api.operator())
    member = api.add_user(owner)
    # A webhook endpoint with a delivery (its message goes to the webhooks queue; no attempt matters here).
    webhook = api.post("/webhooks", owner, json={"url": "http://127.0.0.1:9/hook", "event_types": ["webhook.test"]})
    webhook_id = (webhook.json or {})["id"]
    delivery = api.post(f"/webhooks/{webhook_id}/test", owner).json or {}
    # A HELD hold, so capture and void would succeed for its owner.
    hold = api.post("/holds", owner, json={"source_wallet_id": wallet, "destination_wallet_id": other, "amount": 10})
    hold_id = (hold.json or {})["id"]
    assert (api.get(f"/holds/{hold_id}?wait=10", owner).json or {})["status"] == "HELD"
    monitor = api.post(
        f"/wallets/{wallet}/monitors", owner, json={"condition": "available_balance_below", "threshold": 1}
    )
    return {
        "monitor_id": (monitor.json or {})["id"],
        "webhook_id": webhook_id,
        "delivery_id": delivery["id"],
        "owner": owner,
        "member": member,
        "user_id": member.id,
        "wallet_id": wallet,
        "transaction_id": completed["id"],
        "request_id": request["id"],
        "batch_id": batch["id"],
        "hold_id": hold_id,
        "run_id": (api.post("/reconciliation/run", owner, json={}).json or {})["id"],
        "api": api,
    }


def _operations(app) -> list[tuple[str, str]]:
    spec: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
    return [
        (method, path)
        for path, item in spec["paths"].items()
        if "{" in path
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    ]


def test_every_path_with_an_id_is_a_wall(app, victim, db, monkeypatch):
    monkeypatch.setitem(app.config, "AUDIT_DENIALS_PER_ACTOR_PER_MINUTE", 1_000)  # every probe audited
    api = victim["api"]
    outsider = api.signup("Outsider")
    outsider_user = api.add_user(outsider)
    before = db.row_counts()
    wallet_before = api.wallet(victim["owner"], victim["wallet_id"])
    checked = []

    for method, path in _operations(app):
        params = re.findall(r"{(\w+)}", path)
        missing = [p for p in params if p not in victim]
        assert not missing, f"{method.upper()} {path}: add a victim object for {missing} to this test"
        url = path.format(**{p: victim[p] for p in params})
        body = dict(VALID_BODIES.get((method, path), {}))
        if "members" in path:
            body["user_id"] = outsider_user.id
        if "source_wallet_id" in body:
            body["source_wallet_id"] = victim["wallet_id"]
        # The whole path: the seed-compatible ones live outside /api/v1.
        response = app.test_client().open(url, method=method.upper(), headers=outsider.headers, json=body or None)
        assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}"
        assert response.json["error"]["code"].endswith("NOT_FOUND")
        checked.append((method, path))

    assert len(checked) >= 10
    # Every probe is in the prober's organisation's trail, naming the path it tried; none in the victim's.
    denied = api.get("/audit-logs?action=access.denied&limit=500", outsider).json["items"]
    assert sorted(row["after"]["attempted"] for row in denied) == sorted(f"{m.upper()} {p}" for m, p in checked)
    assert {row["actor_id"] for row in denied} == {outsider.id}
    assert all(row["target_id"] in victim.values() for row in denied)
    victims_trail = str(api.get("/audit-logs?limit=500", victim["owner"]).json["items"])
    assert outsider.id not in victims_trail and outsider.organization_id not in victims_trail
    assert db.row_counts() == {**before, "organizations": before["organizations"], "users": before["users"]}
    assert api.wallet(victim["owner"], victim["wallet_id"]) == wallet_before
    assert api.get("/auth/me", victim["member"]).json["active"] is True


def test_outsider_cannot_debit_but_may_pay_into_another_organisation(api, victim):
    outsider = api.signup()
    outsider_wallet = api.funded_wallet(outsider, 500)
    stolen = api.transfer(outsider, victim["wallet_id"], outsider_wallet, 100)
    assert stolen.status_code == 404

    gift = api.transfer(outsider, outsider_wallet, victim["wallet_id"], 100)
    assert gift.status_code == 202
    assert api.wait_final(outsider, gift.json["id"])["status"] == "COMPLETED"
    # The payer sees only its own side of the ledger, never the receiver's balance_after.
    entries = api.get(f"/transactions/{gift.json['id']}/ledger", outsider).json["items"]
    assert [(e["wallet_id"], e["direction"]) for e in entries] == [(outsider_wallet, "DEBIT")]


def test_lists_never_show_another_organisation(api, victim):
    outsider = api.signup()
    # Failed logins span organisations: a tenant's OWNER may not list them at all.
    assert api.get("/audit-logs/failed-logins", outsider).status_code == 403
    assert api.get("/wallets/", outsider).json["items"] == []
    assert api.get("/transactions/", outsider).json["items"] == []
    listed = api.get(f"/transactions/?wallet_id={victim['wallet_id']}", outsider).json["items"]
    assert listed == []
