"""POST /transactions/batch: many intents in one request, each item accepted or rejected on its own."""

from __future__ import annotations

import uuid

from tests.client import bulk_item


def test_valid_items_are_accepted_and_settled_invalid_ones_rejected_alone(api, db):
    owner = api.signup()
    stranger = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    foreign = api.create_wallet(stranger)
    items = [
        bulk_item(source, destination, 100),
        bulk_item(source, destination, 0),  # not a positive amount
        bulk_item(source, source, 100),  # same wallet
        bulk_item(foreign, destination, 100),  # another tenant's wallet
        bulk_item(source, str(uuid.uuid4()), 100),  # no such destination
        "not an object",
        {k: v for k, v in bulk_item(source, destination, 100).items() if k != "idempotency_key"},
        bulk_item(source, foreign, 200),  # any organisation's wallet may receive
    ]
    response = api.transfer_batch(owner, items)
    assert response.status_code == 202, response.json
    body = response.json
    assert (body["accepted"], body["replayed"], body["rejected"]) == (2, 0, 6)
    results = body["items"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status_code"] for r in results] == [202, 422, 422, 404, 404, 422, 422, 202]
    codes = [r["error"]["code"] if r["error"] else None for r in results]
    assert codes == [
        None,
        "VALIDATION_ERROR",
        "SAME_WALLET",
        "WALLET_NOT_FOUND",
        "DESTINATION_WALLET_NOT_FOUND",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        None,
    ]
    assert "amount" in results[1]["error"]["details"]
    assert "idempotency_key" in results[6]["error"]["details"]
    accepted = [results[0]["transaction"], results[7]["transaction"]]
    assert all(t["status"] == "PENDING" and t["type"] == "TRANSFER" for t in accepted)
    assert [api.wait_final(owner, t["id"])["status"] for t in accepted] == ["COMPLETED", "COMPLETED"]
    assert api.wallet(owner, source)["balance"] == 9_700
    assert db.scalar("SELECT count(*) FROM idempotency_keys WHERE organization_id = :o", o=owner.organization_id) == 2


def test_the_same_batch_again_replays_every_item_and_creates_nothing(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    items = [bulk_item(source, destination, 10 + n) for n in range(20)]
    first = api.transfer_batch(owner, items).json
    count = db.scalar("SELECT count(*) FROM transactions WHERE source_wallet_id = :w", w=source)

    again = api.transfer_batch(owner, items)
    assert again.status_code == 202
    assert (again.json["accepted"], again.json["replayed"]) == (0, 20)
    assert {r["status_code"] for r in again.json["items"]} == {200}
    assert [r["transaction"]["id"] for r in again.json["items"]] == [r["transaction"]["id"] for r in first["items"]]
    assert db.scalar("SELECT count(*) FROM transactions WHERE source_wallet_id = :w", w=source) == count


def test_idempotency_keys_keep_their_promise_across_batches_and_endpoints(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    single = api.transfer(owner, source, destination, 500, key="shared-key").json
    items = [
        bulk_item(source, destination, 500, key="shared-key"),  # same request as the single transfer
        bulk_item(source, destination, 501, key="shared-key-2"),
        bulk_item(source, destination, 501, key="shared-key-2"),  # duplicate in the batch, same request
        bulk_item(source, destination, 999, key="shared-key-2"),  # duplicate in the batch, other request
    ]
    results = api.transfer_batch(owner, items).json["items"]
    assert [r["status_code"] for r in results] == [200, 202, 200, 422]
    assert results[0]["transaction"]["id"] == single["id"]
    assert results[2]["transaction"]["id"] == results[1]["transaction"]["id"]
    assert results[3]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    reused = api.transfer_batch(owner, [bulk_item(source, destination, 7, key="shared-key")]).json["items"][0]
    assert (reused["status_code"], reused["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")


def test_a_viewer_may_not_debit_but_a_contributor_may(api):
    owner = api.signup()
    member = api.add_user(owner)
    viewed = api.funded_wallet(owner, 1_000)
    shared = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(member)
    for wallet, role in ((viewed, "VIEWER"), (shared, "CONTRIBUTOR")):
        grant = api.post(f"/wallets/{wallet}/members", owner, json={"user_id": member.id, "role": role})
        assert grant.status_code in (200, 201), grant.json
    results = api.transfer_batch(member, [bulk_item(viewed, destination, 10), bulk_item(shared, destination, 10)]).json[
        "items"
    ]
    assert [r["status_code"] for r in results] == [403, 202]
    assert results[0]["error"]["code"] == "NOT_WALLET_DEBITOR"


def test_the_envelope_is_bounded_and_authenticated(api):
    owner = api.signup()
    source = api.create_wallet(owner)
    destination = api.create_wallet(owner)
    assert api.transfer_batch(owner, []).status_code == 422
    too_many = [bulk_item(source, destination, 1) for _ in range(1_001)]
    assert api.transfer_batch(owner, too_many).status_code == 422
    assert api.post("/transactions/batch", json={"transfers": [bulk_item(source, destination, 1)]}).status_code == 401
    assert api.post("/transactions/batch", owner, json={"items": []}).status_code == 422


def test_the_endpoint_is_documented(api):
    spec = api.app.test_client().get("/openapi.json").json
    operation = spec["paths"]["/api/v1/transactions/batch"]["post"]
    assert "202" in operation["responses"]
    schemas = spec["components"]["schemas"]
    assert "idempotency_key" in schemas["BulkTransferItem"]["properties"]
