"""SYSTEM wallets (treasury, clearing) move money only through deposits, withdrawals and settlement
batches: every other way in or out is refused at intake (422 SYSTEM_WALLET), and again by the worker
for an intent that got past intake."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tasks.settlement import settle_soon
from tests.client import ApiClient, bulk_item
from tests.functional.test_cross_org import system_wallet


class Books:
    """Two organisations with funded wallets and their treasury and clearing wallets, and a MEMBER
    who was made a CONTRIBUTOR of the treasury before such grants were refused (a row from then)."""

    def __init__(self, api: ApiClient, db: Any) -> None:
        self.owner, self.stranger = api.signup(), api.signup()
        self.member = api.add_user(self.owner, "MEMBER")
        self.own = api.funded_wallet(self.owner, 10_000)
        self.member_wallet = api.create_wallet(self.member)
        self.foreign = api.funded_wallet(self.stranger, 10_000)
        paid = api.transfer(self.stranger, self.foreign, self.own, 100)  # so the clearing wallets exist
        assert paid.json is not None and api.wait_final(self.stranger, paid.json["id"])["status"] == "COMPLETED"
        self.treasury: str = system_wallet(self.owner.organization_id, "treasury").id
        self.clearing: str = system_wallet(self.owner.organization_id, "clearing").id
        self.foreign_clearing: str = system_wallet(self.stranger.organization_id, "clearing").id
        db.execute(
            "INSERT INTO wallet_members (id, wallet_id, user_id, role, granted_by)"
            " VALUES (gen_random_uuid(), :wallet, :user, 'CONTRIBUTOR', :owner)",
            wallet=self.treasury,
            user=self.member.id,
            owner=self.owner.id,
        )


@pytest.fixture(scope="module")
def books(app, worker, db) -> Books:
    return Books(ApiClient(app), db)


def _refused(response: Any) -> None:
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "SYSTEM_WALLET"


def _body(source: str, destination: str, amount: int = 50) -> dict[str, Any]:
    return {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount, "currency": "INR"}


TRANSFER_PATHS = ("/transactions/transfer", "/wallets/transfer")


@pytest.mark.parametrize("path", TRANSFER_PATHS)
def test_no_transfer_out_of_a_treasury_whoever_may_debit_it(api, books, path):
    treasury_before = api.wallet(books.owner, books.treasury)["balance"]
    _refused(api.post(path, books.owner, json=_body(books.treasury, books.own)))
    # The MEMBER who contributes to the treasury: no way round "deposits are OWNER/ADMIN only".
    _refused(api.post(path, books.member, json=_body(books.treasury, books.member_wallet, 10**12)))
    _refused(api.post(path, books.owner, json=_body(books.clearing, books.own)))
    assert api.wallet(books.owner, books.treasury)["balance"] == treasury_before


@pytest.mark.parametrize("path", TRANSFER_PATHS)
def test_no_transfer_into_a_system_wallet_of_any_organisation(api, books, path):
    for destination in (books.foreign_clearing, books.treasury, books.clearing):
        _refused(api.post(path, books.owner, json=_body(books.own, destination)))


def test_the_seed_internal_move_refuses_system_wallets(api, books):
    for source, destination in ((books.treasury, books.own), (books.own, books.treasury)):
        response = api.app.test_client().post(
            "/api/vault-settlements/internal", headers=books.owner.headers, json=_body(source, destination)
        )
        _refused(response)


def test_bulk_rejects_the_items_naming_a_system_wallet_and_accepts_the_rest(api, books):
    items = [
        bulk_item(books.own, books.member_wallet, 10),
        bulk_item(books.treasury, books.own, 10),
        bulk_item(books.own, books.foreign_clearing, 10),
        bulk_item(books.clearing, books.own, 10),
        bulk_item(books.own, books.treasury, 10),
        bulk_item(books.own, books.foreign, 10),
    ]
    response = api.transfer_batch(books.owner, items)
    assert response.status_code == 202, response.json
    results = response.json["items"]
    assert [r["status_code"] for r in results] == [202, 422, 422, 422, 422, 202]
    assert [r["error"]["code"] if r["error"] else None for r in results] == [None, *["SYSTEM_WALLET"] * 4, None]
    # The member's contributed treasury, in a batch of their own.
    member_batch = api.transfer_batch(books.member, [bulk_item(books.treasury, books.member_wallet, 10**12)])
    assert member_batch.json["items"][0]["error"]["code"] == "SYSTEM_WALLET"
    assert [api.wait_final(books.owner, results[i]["transaction"]["id"])["status"] for i in (0, 5)] == [
        "COMPLETED",
        "COMPLETED",
    ]


def test_p2p_neither_pays_into_nor_out_of_a_system_wallet(api, books):
    response = api.post(
        "/p2p/requests",
        books.owner,
        json={
            "payer_email": books.stranger.email,
            "amount": 10,
            "currency": "INR",
            "destination_wallet_id": books.treasury,
        },
    )
    _refused(response)
    request = api.p2p_request(books.stranger, books.owner, api.create_wallet(books.stranger), 10)
    _refused(api.p2p_settle(books.owner, request["id"], books.treasury))
    _refused(api.p2p_settle(books.owner, request["id"], books.clearing))
    assert api.p2p_get(books.owner, request["id"]).json["status"] == "REQUESTED"


def test_no_one_becomes_a_member_of_a_system_wallet(api, books):
    for wallet in (books.treasury, books.clearing):
        for role in ("CONTRIBUTOR", "VIEWER"):
            grant = api.post(f"/wallets/{wallet}/members", books.owner, json={"user_id": books.member.id, "role": role})
            _refused(grant)


def test_deposits_and_withdrawals_still_use_the_treasury_and_nothing_else(api, books):
    wallet = api.funded_wallet(books.owner, 500)
    withdrawal = api.post(f"/wallets/{wallet}/withdraw", books.owner, json={"amount": 200})
    assert withdrawal.status_code == 202
    assert api.wait_final(books.owner, withdrawal.json["id"])["status"] == "COMPLETED"
    assert api.wallet(books.owner, wallet)["balance"] == 300
    # The clearing wallet carries obligations: no deposit into it, no withdrawal out of it.
    _refused(api.post(f"/wallets/{books.clearing}/deposit", books.owner, json={"amount": 10}))
    _refused(api.post(f"/wallets/{books.clearing}/withdraw", books.owner, json={"amount": 10}))


@pytest.mark.parametrize("side", ["source", "destination"])
def test_the_worker_fails_a_transfer_naming_a_system_wallet_that_got_past_intake(api, books, db, side):
    """A PENDING intent written behind the API's back: the settlement engine refuses it on its own."""
    source, destination = (books.treasury, books.own) if side == "source" else (books.own, books.foreign_clearing)
    intent_id = str(uuid.uuid4())
    balances = {w: db.scalar("SELECT balance FROM wallets WHERE id = :id", id=w) for w in (source, destination)}
    db.execute(
        "INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,"
        " source_wallet_id, destination_wallet_id) VALUES (:id, :org, :user, 'TRANSFER', 'PENDING', 25, 'INR',"
        " :source, :destination)",
        id=intent_id,
        org=books.owner.organization_id,
        user=books.owner.id,
        source=source,
        destination=destination,
    )
    settle_soon([uuid.UUID(intent_id)])
    final = api.wait_final(books.owner, intent_id)
    assert (final["status"], final["failure_reason"]) == ("FAILED", "SYSTEM_WALLET")
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = :id", id=intent_id) == 0
    assert db.scalar("SELECT count(*) FROM transactions WHERE parent_transaction_id = :id", id=intent_id) == 0
    assert {w: db.scalar("SELECT balance FROM wallets WHERE id = :id", id=w) for w in balances} == balances
