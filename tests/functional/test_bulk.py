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


def test_an_item_with_the_nul_character_is_rejected_alone(api, db):
    """Postgres text cannot hold U+0000: the item's own schema error, not a failure of the whole batch."""
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    items = [
        {**bulk_item(source, destination, 100), "description": "pay\u0000ment"},
        bulk_item(source, destination, 100),
        {**bulk_item(source, destination, 100), "metadata": {"order": "a\u0000b"}},
    ]
    response = api.transfer_batch(owner, items)
    assert response.status_code == 202, response.json
    results = response.json["items"]
    assert [r["status_code"] for r in results] == [422, 202, 422]
    assert "description" in results[0]["error"]["details"]
    assert "metadata" in results[2]["error"]["details"]
    assert db.scalar("SELECT count(*) FROM idempotency_keys WHERE organization_id = :o", o=owner.organization_id) == 1


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


def test_wallet_ids_in_any_uuid_spelling_are_answered_and_fingerprinted_canonically(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    spelled = bulk_item(source.upper(), "{" + destination + "}", 5, key="spelled", metadata={"b": [1, 2], "a": "x"})
    first = api.transfer_batch(owner, [spelled]).json["items"][0]
    assert first["status_code"] == 202, first
    assert (first["transaction"]["source_wallet_id"], first["transaction"]["destination_wallet_id"]) == (
        source,
        destination,
    )
    # The same request in canonical spelling is the same promise, on either endpoint.
    canonical = bulk_item(source, destination, 5, key="spelled", metadata={"a": "x", "b": [1, 2]})
    again = api.transfer_batch(owner, [canonical]).json["items"][0]
    assert (again["status_code"], again["transaction"]["id"]) == (200, first["transaction"]["id"])
    single = api.post(
        "/transactions/transfer",
        owner,
        json={k: v for k, v in canonical.items() if k != "idempotency_key"},
        headers={"Idempotency-Key": "spelled"},
    )
    assert single.status_code == 200 and single.json["id"] == first["transaction"]["id"], single.json


def test_the_audit_row_carries_the_intent_as_answered(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    item = bulk_item(source, destination, 42, description="rent ✓", metadata={"invoice": 7})
    response = api.transfer_batch(owner, [item])
    transaction = response.json["items"][0]["transaction"]
    [after] = db.rows("SELECT after FROM audit_logs WHERE target_id = :t", t=transaction["id"])
    assert after[0] == {
        **transaction,
        "organization_id": owner.organization_id,
        "description": "rent ✓",
        "metadata": {"invoice": 7},
    }
    stored = db.rows("SELECT description, metadata, created_by FROM transactions WHERE id = :t", t=transaction["id"])
    assert [tuple(row) for row in stored] == [("rent ✓", {"invoice": 7}, uuid.UUID(owner.id))]


def test_a_key_comes_first_even_when_the_item_would_now_be_refused(api):
    owner = api.signup()
    member = api.add_user(owner)
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    item = bulk_item(source, destination, 10, key="owners-key")
    created = api.transfer_batch(owner, [item]).json["items"][0]
    # The member may not see the owner's transaction: the key (scoped to the organisation) answers as
    # one used with another request, and says nothing of it (as for a single transfer).
    hidden = api.transfer_batch(member, [item]).json["items"][0]
    assert (hidden["status_code"], hidden["error"]["code"], hidden["transaction"]) == (
        422,
        "IDEMPOTENCY_KEY_REUSED",
        None,
    )
    # A VIEWER of the source sees the transaction but may not debit the wallet: the key was used with
    # this very request, so that is a replay, not a refusal.
    shared = api.post(f"/wallets/{source}/members", owner, json={"user_id": member.id, "role": "VIEWER"})
    assert shared.status_code == 201, shared.json
    replayed, refused = api.transfer_batch(member, [item, bulk_item(source, destination, 10)]).json["items"]
    assert (replayed["status_code"], replayed["transaction"]["id"]) == (200, created["transaction"]["id"])
    assert (refused["status_code"], refused["error"]["code"]) == (403, "NOT_WALLET_DEBITOR")


def test_a_duplicate_of_a_refused_item_shares_its_refusal_and_claims_nothing(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    item = bulk_item(source, source, 10, key="twice-refused")
    results = api.transfer_batch(owner, [item, item]).json["items"]
    assert [(r["status_code"], r["error"]["code"]) for r in results] == [(422, "SAME_WALLET")] * 2
    assert db.scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'twice-refused'") == 0


def _post_together(api, batches):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(batches)) as pool:
        return [f.result() for f in [pool.submit(api.transfer_batch, user, items) for user, items in batches]]


def test_concurrent_batches_sharing_keys_make_one_intent_per_key(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 100_000)
    destination = api.create_wallet(owner)
    shared = [bulk_item(source, destination, 1 + n) for n in range(200)]
    for _ in range(3):
        # The same keys, in opposite orders: each key claimed once, and no deadlock.
        fresh = [bulk_item(source, destination, 1 + n) for n in range(200)]
        first, second = _post_together(api, [(owner, fresh + shared), (owner, list(reversed(fresh + shared)))])
        assert first.status_code == second.status_code == 202, (first.json, second.json)
        by_key: dict[str, list[dict]] = {}
        for response, items in ((first, fresh + shared), (second, list(reversed(fresh + shared)))):
            for item, result in zip(items, response.json["items"], strict=True):
                by_key.setdefault(item["idempotency_key"], []).append(result)
        for results in by_key.values():
            assert sorted(r["status_code"] for r in results) in ([200, 202], [200, 200])
            assert len({r["transaction"]["id"] for r in results}) == 1
        shared = fresh
    keys = [item["idempotency_key"] for item in shared]
    assert db.scalar("SELECT count(*) FROM transactions WHERE idempotency_key = ANY(:k)", k=keys) == len(keys)


def test_concurrent_batches_with_one_key_for_two_requests_refuse_the_loser(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 100_000)
    destination = api.create_wallet(owner)
    keys = [uuid.uuid4().hex for _ in range(100)]
    mine = [bulk_item(source, destination, 1, key=k) for k in keys]
    theirs = [bulk_item(source, destination, 2, key=k) for k in reversed(keys)]
    first, second = _post_together(api, [(owner, mine), (owner, theirs)])
    outcomes: dict[str, list[object]] = {}
    for response, items in ((first, mine), (second, theirs)):
        for item, result in zip(items, response.json["items"], strict=True):
            outcomes.setdefault(item["idempotency_key"], []).append(
                result["error"]["code"] if result["error"] else result["status_code"]
            )
    assert all(sorted(map(str, o)) == ["202", "IDEMPOTENCY_KEY_REUSED"] for o in outcomes.values()), outcomes
    assert db.scalar("SELECT count(*) FROM transactions WHERE idempotency_key = ANY(:k)", k=keys) == len(keys)


def test_a_failure_after_the_write_leaves_nothing_behind(api, db, monkeypatch):
    from ledger.intents import bulk

    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    items = [bulk_item(source, destination, 3), bulk_item(source, destination, 4)]

    def fail(*args, **kwargs):
        raise RuntimeError("injected after the write")

    monkeypatch.setattr(bulk, "note_accepted", fail)
    api.app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        assert api.transfer_batch(owner, items).status_code == 500
    finally:
        api.app.config["PROPAGATE_EXCEPTIONS"] = None
    keys = [item["idempotency_key"] for item in items]
    assert db.scalar("SELECT count(*) FROM idempotency_keys WHERE key = ANY(:k)", k=keys) == 0
    assert db.scalar("SELECT count(*) FROM transactions WHERE idempotency_key = ANY(:k)", k=keys) == 0
    assert db.scalar("SELECT count(*) FROM audit_logs WHERE after->>'idempotency_key' = ANY(:k)", k=keys) == 0


def test_the_request_body_documents_each_item_as_the_item_schema(api):
    spec = api.app.test_client().get("/openapi.json").json
    operation = spec["paths"]["/api/v1/transactions/batch"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    transfers = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]["transfers"]
    assert transfers["type"] == "array" and transfers["items"]["$ref"].endswith("/BulkTransferItem")
    assert (transfers["minItems"], transfers["maxItems"]) == (1, 1_000)


def test_an_intents_result_is_written_exactly_as_the_encoder_writes_it(app):
    """The answer formats each intent's result from a template (web/routes/bulk.py): the same bytes
    the JSON encoder makes of its dict, for a new intent, a replayed settled one and a failed one,
    with keys that need escaping."""
    from datetime import UTC, datetime, timedelta

    from ledger.errors import NotFound
    from ledger.intents.bulk import AcceptedIntent, BulkItem, ItemOutcome
    from web.routes.bulk import _Answer, _compact

    accepted_at = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC)
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())

    def intent(key: str | None, status: str, reason: str | None, completed: datetime | None) -> AcceptedIntent:
        return AcceptedIntent(
            str(uuid.uuid4()), "TRANSFER", status, reason, source, destination, 1050, "INR", key, accepted_at, completed
        )

    item = BulkItem(source, destination, 1050, "INR", None, None, "key")
    outcomes = [
        ItemOutcome(intent("plain-key", "PENDING", None, None), created=True),
        ItemOutcome(intent('quote " back \\ slash', "COMPLETED", None, accepted_at + timedelta(seconds=1)), False),
        ItemOutcome(intent("clé \u2603 \U0001f600 \x01", "FAILED", "INSUFFICIENT_FUNDS", accepted_at), False),
        ItemOutcome(intent(None, "COMPLETED", None, datetime(2026, 12, 8, 1, 2, 4, tzinfo=UTC)), False),
        ItemOutcome(error=NotFound("wallet not found", code="WALLET_NOT_FOUND")),
    ]
    with app.app_context():
        answer = _Answer()
        for index, outcome in enumerate(outcomes):
            assert answer.item_json(index, item, outcome) == _compact(answer.item_result(index, item, outcome))
        rejected = {"code": "VALIDATION_ERROR", "message": "transfer failed validation", "details": None}
        assert answer.item_json(9, rejected, ItemOutcome()) == _compact(answer.item_result(9, rejected, ItemOutcome()))
