"""Peer-to-peer requests: every transition allowed and forbidden, idempotent settling, tenancy 404s."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import text

from models.db import get_engine


def _scalar(sql: str, **params):
    with get_engine().connect() as connection:
        return connection.execute(text(sql), params).scalar()


@pytest.fixture
def parties(api):
    """A payee in one organisation with an empty wallet, a funded payer in another."""
    payee = api.signup("Payee Org")
    payer = api.signup("Payer Org")
    return payee, api.create_wallet(payee), payer, api.funded_wallet(payer, 10_000)


def _final_request(api, user, request_id):
    request = api.p2p_get(user, request_id).json
    if request["transaction_id"]:
        api.wait_final(user, request["transaction_id"])
    return api.p2p_get(user, request_id).json


def test_request_across_organisations_settles_and_follows_its_transaction(api, parties):
    payee, destination, payer, source = parties
    request = api.p2p_request(payee, payer, destination, 2_500)
    assert request["status"] == "REQUESTED"
    assert request["payer_email"] == payer.email and request["payee_email"] == payee.email
    assert request["transaction_id"] is None

    response = api.p2p_settle(payer, request["id"], source)
    assert response.status_code == 202, response.json
    assert response.json["request"]["status"] == "SETTLING"
    transaction = response.json["transaction"]
    assert transaction["status"] == "PENDING"
    assert response.json["request"]["transaction_id"] == transaction["id"]

    assert api.wait_final(payer, transaction["id"])["status"] == "COMPLETED"
    final = api.p2p_get(payee, request["id"]).json
    assert final["status"] == "SETTLED"
    assert final["resolved_at"] is not None
    assert api.wallet(payee, destination)["balance"] == 2_500
    assert api.wallet(payer, source)["balance"] == 7_500


def test_request_fails_when_its_transaction_fails(api, parties):
    payee, destination, payer, source = parties
    request = api.p2p_request(payee, payer, destination, 50_000)  # more than the payer holds
    transaction_id = api.p2p_settle(payer, request["id"], source).json["transaction"]["id"]
    assert api.wait_final(payer, transaction_id)["failure_reason"] == "INSUFFICIENT_FUNDS"
    final = api.p2p_get(payer, request["id"]).json
    assert final["status"] == "FAILED"
    assert final["failure_reason"] == "INSUFFICIENT_FUNDS"
    # A final state never changes.
    assert api.p2p_settle(payer, request["id"], source).status_code == 200
    assert api.post(f"/p2p/requests/{request['id']}/decline", payer).status_code == 409
    assert api.post(f"/p2p/requests/{request['id']}/cancel", payee).status_code == 409
    assert api.p2p_get(payer, request["id"]).json["status"] == "FAILED"


def test_cancelling_the_transaction_fails_the_request(api, parties, unpublished):
    payee, destination, payer, source = parties
    unpublished.start()
    request = api.p2p_request(payee, payer, destination, 100)
    transaction_id = api.p2p_settle(payer, request["id"], source).json["transaction"]["id"]
    assert transaction_id in unpublished.ids
    assert api.post(f"/transactions/{transaction_id}/cancel", payer).status_code == 200
    final = api.p2p_get(payee, request["id"]).json
    assert (final["status"], final["failure_reason"]) == ("FAILED", "TRANSACTION_CANCELLED")


def test_settling_twice_creates_one_transaction(api, parties):
    payee, destination, payer, source = parties
    request = api.p2p_request(payee, payer, destination, 1_000)
    first = api.p2p_settle(payer, request["id"], source, key="pay-once")
    second = api.p2p_settle(payer, request["id"], source, key="pay-once")
    third = api.p2p_settle(payer, request["id"], source)
    assert first.status_code == 202
    assert second.status_code == 200 and third.status_code == 200
    ids = {r.json["transaction"]["id"] for r in (first, second, third)}
    assert len(ids) == 1
    assert _final_request(api, payer, request["id"])["status"] == "SETTLED"
    assert api.wallet(payer, source)["balance"] == 9_000
    assert _scalar("SELECT count(*) FROM transactions WHERE metadata->>'p2p_request_id' = :id", id=request["id"]) == 1


def test_settling_from_many_threads_at_once_creates_one_transaction(api, parties):
    payee, destination, payer, source = parties
    request = api.p2p_request(payee, payer, destination, 700)
    responses = []
    barrier = threading.Barrier(8)

    def settle():
        barrier.wait()
        responses.append(api.p2p_settle(payer, request["id"], source))

    threads = [threading.Thread(target=settle) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json["transaction"]["id"] for r in responses}) == 1
    assert _final_request(api, payer, request["id"])["status"] == "SETTLED"
    assert api.wallet(payer, source)["balance"] == 9_300
    assert api.wallet(payee, destination)["balance"] == 700


def test_settling_again_from_another_wallet_is_a_conflict(api, parties):
    payee, destination, payer, source = parties
    other = api.funded_wallet(payer, 1_000)
    request = api.p2p_request(payee, payer, destination, 100)
    assert api.p2p_settle(payer, request["id"], source).status_code == 202
    response = api.p2p_settle(payer, request["id"], other)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "P2P_REQUEST_ALREADY_SETTLED"


def test_decline_and_cancel_are_final(api, parties):
    payee, destination, payer, source = parties
    declined = api.p2p_request(payee, payer, destination, 100)
    response = api.post(f"/p2p/requests/{declined['id']}/decline", payer)
    assert response.status_code == 200 and response.json["status"] == "DECLINED"
    cancelled = api.p2p_request(payee, payer, destination, 100)
    response = api.post(f"/p2p/requests/{cancelled['id']}/cancel", payee)
    assert response.status_code == 200 and response.json["status"] == "CANCELLED"

    for request_id in (declined["id"], cancelled["id"]):
        for response in (
            api.p2p_settle(payer, request_id, source),
            api.post(f"/p2p/requests/{request_id}/decline", payer),
            api.post(f"/p2p/requests/{request_id}/cancel", payee),
        ):
            assert response.status_code == 409, response.json
            assert response.json["error"]["code"] == "P2P_REQUEST_NOT_OPEN"
    assert api.wallet(payer, source)["balance"] == 10_000
    assert (
        _scalar(
            "SELECT count(*) FROM transactions WHERE metadata->>'p2p_request_id' IN (:a, :b)",
            a=declined["id"],
            b=cancelled["id"],
        )
        == 0
    )


def test_a_settling_request_can_be_neither_declined_nor_cancelled(api, parties, unpublished):
    payee, destination, payer, source = parties
    unpublished.start()
    request = api.p2p_request(payee, payer, destination, 100)
    assert api.p2p_settle(payer, request["id"], source).status_code == 202
    assert api.post(f"/p2p/requests/{request['id']}/decline", payer).status_code == 409
    assert api.post(f"/p2p/requests/{request['id']}/cancel", payee).status_code == 409
    assert api.p2p_get(payee, request["id"]).json["status"] == "SETTLING"


def test_only_the_payer_settles_or_declines_and_only_the_payee_cancels(api, parties):
    payee, destination, payer, source = parties
    stranger = api.signup("Stranger Org")
    payer_colleague = api.add_user(payer, "ADMIN")
    request = api.p2p_request(payee, payer, destination, 100)
    path = f"/p2p/requests/{request['id']}"

    for user in (payee, stranger, payer_colleague):
        assert api.p2p_settle(user, request["id"], source).status_code == 404
        assert api.post(f"{path}/decline", user).status_code == 404
    for user in (payer, stranger, payer_colleague):
        assert api.post(f"{path}/cancel", user).status_code == 404
    for user in (stranger, payer_colleague):
        response = api.get(path, user)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "P2P_REQUEST_NOT_FOUND"
        assert api.get("/p2p/requests", user).json["items"] == []
    assert api.get(path, payer).status_code == 200 and api.get(path, payee).status_code == 200
    assert api.get(f"/p2p/requests/{uuid.uuid4()}", payer).status_code == 404
    assert api.p2p_get(payee, request["id"]).json["status"] == "REQUESTED"


def test_the_payer_pays_only_from_a_wallet_they_may_debit(api, parties):
    payee, destination, payer, source = parties
    member = api.add_user(payer)  # MEMBER of the payer's organisation: `source` is not even visible
    admin = api.add_user(payer, "ADMIN")  # sees `source`, but neither owns it nor contributes to it
    assert api.p2p_settle(member, api.p2p_request(payee, member, destination, 100)["id"], source).status_code == 404
    request = api.p2p_request(payee, admin, destination, 100)
    response = api.p2p_settle(admin, request["id"], source)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "NOT_WALLET_DEBITOR"
    member = admin
    # Another organisation's wallet is not even visible.
    assert api.p2p_settle(member, request["id"], destination).status_code == 404
    assert api.p2p_get(member, request["id"]).json["status"] == "REQUESTED"
    grant = api.post(f"/wallets/{source}/members", payer, json={"user_id": member.id, "role": "CONTRIBUTOR"})
    assert grant.status_code == 201
    assert api.p2p_settle(member, request["id"], source).status_code == 202
    assert _final_request(api, member, request["id"])["status"] == "SETTLED"


def test_listing_by_role(api, parties):
    payee, destination, payer, _ = parties
    payer_destination = api.create_wallet(payer)
    asked = api.p2p_request(payee, payer, destination, 100)
    asked_back = api.p2p_request(payer, payee, payer_destination, 200)
    payer_side = api.get("/p2p/requests?role=payer", payer).json["items"]
    payee_side = api.get("/p2p/requests?role=payee", payer).json["items"]
    both = api.get("/p2p/requests", payer).json["items"]
    assert [r["id"] for r in payer_side] == [asked["id"]]
    assert [r["id"] for r in payee_side] == [asked_back["id"]]
    assert [r["id"] for r in both] == [asked_back["id"], asked["id"]]  # newest first
    assert api.get("/p2p/requests?role=everyone", payer).status_code == 422
    page = api.get("/p2p/requests?limit=1", payer).json
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get(f"/p2p/requests?limit=1&cursor={page['next_cursor']}", payer).json
    assert [r["id"] for r in rest["items"]] == [asked["id"]]


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 10.5},
        {"amount": "100"},
        {"amount": 0},
        {"amount": -5},
        {"amount": True},
        {"currency": "inr"},
        {"payer_email": "not-an-email"},
        {"destination_wallet_id": "nope"},
        {"note": "x" * 501},
        {"unexpected": 1},
    ],
)
def test_bad_input_is_422_and_writes_nothing(api, parties, change):
    payee, destination, payer, _ = parties
    body = {"payer_email": payer.email, "amount": 100, "currency": "INR", "destination_wallet_id": destination}
    before = _scalar("SELECT count(*) FROM p2p_requests")
    response = api.post("/p2p/requests", payee, json={**body, **change})
    assert response.status_code == 422, response.json
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert _scalar("SELECT count(*) FROM p2p_requests") == before


def test_business_rule_refusals(api, parties):
    payee, destination, payer, source = parties
    body = {"payer_email": payer.email, "amount": 100, "currency": "INR", "destination_wallet_id": destination}
    cases = [
        ({"payer_email": payee.email}, payee, 422, "SELF_REQUEST"),
        ({"currency": "USD"}, payee, 422, "CURRENCY_MISMATCH"),
        ({"destination_wallet_id": source}, payee, 404, "WALLET_NOT_FOUND"),
        ({"destination_wallet_id": str(uuid.uuid4())}, payee, 404, "WALLET_NOT_FOUND"),
    ]
    for change, user, status, code in cases:
        response = api.post("/p2p/requests", user, json={**body, **change})
        assert (response.status_code, response.json["error"]["code"]) == (status, code), change
    usd_source = api.funded_wallet(payer, 1_000, currency="USD")
    request = api.p2p_request(payee, payer, destination, 100)
    response = api.p2p_settle(payer, request["id"], usd_source)
    assert (response.status_code, response.json["error"]["code"]) == (422, "CURRENCY_MISMATCH")
    assert api.p2p_settle(payer, request["id"], "not-a-uuid").status_code == 422
    assert api.p2p_get(payer, request["id"]).json["status"] == "REQUESTED"
    assert api.post("/p2p/requests", json=body).status_code == 401


def _without_ids_and_times(view: dict) -> dict:
    return {k: v for k, v in view.items() if k not in ("id", "created_at", "updated_at")}


def test_asking_an_unknown_email_answers_as_asking_a_user_does(api, parties):
    """Otherwise anyone who signs up can test which emails have accounts, in any organisation."""
    payee, destination, payer, _source = parties
    known_email, unknown_email = payer.email, f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    answers = {}
    for email in (known_email, unknown_email):
        body = {"payer_email": email, "amount": 100, "currency": "INR", "destination_wallet_id": destination}
        answers[email] = api.post("/p2p/requests", payee, json=body)
        bad_wallet = {**body, "destination_wallet_id": str(uuid.uuid4())}
        missing = api.post("/p2p/requests", payee, json=bad_wallet)
        assert (missing.status_code, missing.json["error"]["code"]) == (404, "WALLET_NOT_FOUND"), email
    known, unknown = answers[known_email], answers[unknown_email]
    assert (known.status_code, unknown.status_code) == (201, 201)
    assert set(known.headers.keys()) == set(unknown.headers.keys())
    known_view, unknown_view = _without_ids_and_times(known.json), _without_ids_and_times(unknown.json)
    assert known_view == {**unknown_view, "payer_email": known_email}
    assert known_view["payer_id"] is None and known_view["payer_organization_id"] is None
    # The payee's list shows the two alike too; the payee may withdraw the one nobody can answer.
    listed = {r["id"]: r for r in api.get("/p2p/requests?role=payee", payee).json["items"]}
    assert listed[known.json["id"]]["payer_id"] is None and listed[unknown.json["id"]]["payer_id"] is None
    assert api.post(f"/p2p/requests/{unknown.json['id']}/cancel", payee).json["status"] == "CANCELLED"
    # The real payer sees theirs, and once they act the payee learns who they are.
    declined = api.post(f"/p2p/requests/{known.json['id']}/decline", payer)
    assert declined.status_code == 200, declined.json
    assert api.p2p_get(payee, known.json["id"]).json["payer_id"] == payer.id


def test_seed_compatible_paths_behave_like_their_twins(api, parties):
    payee, destination, payer, source = parties
    response = api.app.test_client().post(
        "/api/vault-settlements/p2p/request",
        headers=payee.headers,
        json={"payer_email": payer.email, "amount": 300, "destination_wallet_id": destination},
    )
    assert response.status_code == 201, response.json
    request_id = response.json["id"]
    settle = api.app.test_client().post(
        f"/api/vault-settlements/p2p/settle/{request_id}", headers=payer.headers, json={"source_wallet_id": source}
    )
    assert settle.status_code == 202, settle.json
    again = api.app.test_client().post(
        f"/api/vault-settlements/p2p/settle/{request_id}", headers=payer.headers, json={"source_wallet_id": source}
    )
    assert again.status_code == 200
    assert again.json["transaction"]["id"] == settle.json["transaction"]["id"]
    stranger = api.signup()
    assert (
        api.app.test_client()
        .post(
            f"/api/vault-settlements/p2p/settle/{request_id}",
            headers=stranger.headers,
            json={"source_wallet_id": source},
        )
        .status_code
        == 404
    )
    assert _final_request(api, payer, request_id)["status"] == "SETTLED"

    second = api.create_wallet(payer)
    internal = api.app.test_client().post(
        "/api/vault-settlements/internal",
        headers=payer.headers,
        json={"source_wallet_id": source, "destination_wallet_id": second, "amount": 200},
    )
    assert internal.status_code == 202, internal.json
    assert api.wait_final(payer, internal.json["id"])["status"] == "COMPLETED"
    outward = api.app.test_client().post(
        "/api/vault-settlements/internal",
        headers=payer.headers,
        json={"source_wallet_id": source, "destination_wallet_id": destination, "amount": 200},
    )
    assert outward.status_code == 404  # another organisation's wallet is not one of the caller's

    entries = api.app.test_client().get("/api/vault-settlements/ledger", headers=payer.headers).json["items"]
    mine = {(e["wallet_id"], e["direction"], e["amount"]) for e in entries}
    assert (second, "CREDIT", 200) in mine and (source, "DEBIT", 300) in mine
    assert all(e["wallet_id"] != destination for e in entries)
    assert api.app.test_client().get("/api/vault-settlements/ledger").status_code == 401


def test_get_with_wait_answers_once_the_request_is_final(api, parties):
    """Read right after the settle, a request is SETTLING; `?wait=N` holds the answer until it is final,
    as `GET /transactions/{id}?wait=N` does."""
    payee, destination, payer, source = parties
    request = api.p2p_request(payee, payer, destination, 1_200)
    assert api.p2p_settle(payer, request["id"], source).status_code == 202

    waited = api.get(f"/p2p/requests/{request['id']}?wait=5", payee)

    assert waited.status_code == 200, waited.json
    assert waited.json["status"] == "SETTLED"
    assert api.wallet(payee, destination)["balance"] == 1_200


def test_get_with_wait_returns_at_the_deadline_while_the_transfer_is_unsettled(api, parties, unpublished):
    payee, destination, payer, source = parties
    unpublished.start()
    request = api.p2p_request(payee, payer, destination, 100)
    api.p2p_settle(payer, request["id"], source)

    waited = api.get(f"/p2p/requests/{request['id']}?wait=0.3", payer)

    assert (waited.status_code, waited.json["status"]) == (200, "SETTLING")


@pytest.mark.parametrize("wait", ["31", "-1", "soon"])
def test_get_refuses_a_wait_out_of_bounds(api, parties, wait):
    payee, destination, payer, _source = parties
    request = api.p2p_request(payee, payer, destination, 100)
    response = api.get(f"/p2p/requests/{request['id']}?wait={wait}", payee)
    assert response.status_code == 422
    assert "error" in response.json
