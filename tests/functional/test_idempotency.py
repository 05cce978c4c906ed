"""Idempotency-Key: retries make nothing new; a reused key with another body is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def test_same_key_from_ten_threads_creates_one_transaction(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: api.transfer(owner, source, destination, 250, key="order-42"), range(10)))

    assert {r.status_code for r in responses} <= {200, 202}
    assert [r.status_code for r in responses].count(202) == 1
    assert len({r.json["id"] for r in responses}) == 1
    transaction_id = responses[0].json["id"]
    assert db.scalar("SELECT count(*) FROM transactions WHERE source_wallet_id = :s", s=source) == 1
    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    assert api.wallet(owner, source)["balance"] == 750

    replay = api.transfer(owner, source, destination, 250, key="order-42")
    assert (replay.status_code, replay.json["id"], replay.json["status"]) == (200, transaction_id, "COMPLETED")


def test_same_key_with_another_body_is_422_and_creates_nothing(api, db):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    first = api.transfer(owner, source, destination, 100, key="k1")
    assert first.status_code == 202
    api.wait_final(owner, first.json["id"])
    before = db.row_counts()

    reused = api.transfer(owner, source, destination, 101, key="k1")
    assert reused.status_code == 422
    assert reused.json["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert db.row_counts() == before


def test_keys_are_scoped_to_the_organisation(api):
    first, second = api.signup(), api.signup()
    a = api.transfer(first, api.funded_wallet(first, 100), api.create_wallet(first), 10, key="shared")
    b = api.transfer(second, api.funded_wallet(second, 100), api.create_wallet(second), 10, key="shared")
    assert a.status_code == b.status_code == 202
    assert a.json["id"] != b.json["id"]


def test_deposit_with_key_is_idempotent(api):
    owner = api.signup()
    wallet = api.create_wallet(owner)
    headers = {"Idempotency-Key": "deposit-1"}
    first = api.post(f"/wallets/{wallet}/deposit", owner, headers=headers, json={"amount": 500})
    again = api.post(f"/wallets/{wallet}/deposit", owner, headers=headers, json={"amount": 500})
    assert first.json["id"] == again.json["id"]
    api.wait_final(owner, first.json["id"])
    assert api.wallet(owner, wallet)["balance"] == 500
