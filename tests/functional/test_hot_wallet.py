"""Many intents sharing one hot wallet, settled in batches, some of them lacking funds.

Whatever the batch boundaries and interleavings: every intent ends final, no wallet goes negative,
money is neither made nor lost, each balance equals the sum of its entries and versions have no gaps.
"""

from __future__ import annotations

import threading
import time

from tests.client import bulk_item

SETTLE_SECONDS_MAX = 90


def _wait_all_final(db, ids: list[str]) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS_MAX
    while db.scalar(
        "SELECT count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'PENDING'", ids=ids
    ):
        assert time.monotonic() < deadline, "intents still PENDING"
        time.sleep(0.1)


def _assert_ledger_sound(db, wallets: list[str], total: int) -> None:
    assert (
        db.scalar("SELECT count(*) FROM wallets WHERE id = ANY(CAST(:ids AS uuid[])) AND balance < 0", ids=wallets) == 0
    )
    assert db.scalar("SELECT sum(balance) FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))", ids=wallets) == total
    assert db.wallet_drift(wallets) == []
    assert db.broken_chains(wallets) == []


def test_one_batch_drains_a_hot_wallet_and_fails_the_rest(api, db):
    owner = api.signup()
    hot = api.funded_wallet(owner, 50_000)
    destinations = [api.create_wallet(owner) for _ in range(5)]

    response = api.transfer_batch(owner, [bulk_item(hot, destinations[n % 5], 200) for n in range(300)])
    assert response.status_code == 202, response.json
    assert response.json["accepted"] == 300
    ids = [item["transaction"]["id"] for item in response.json["items"]]
    _wait_all_final(db, ids)

    outcomes = db.rows(
        "SELECT status, failure_reason, count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))"
        " GROUP BY status, failure_reason ORDER BY status",
        ids=ids,
    )
    assert [tuple(row) for row in outcomes] == [("COMPLETED", None, 250), ("FAILED", "INSUFFICIENT_FUNDS", 50)]
    assert api.wallet(owner, hot)["balance"] == 0
    assert api.wallet(owner, hot)["version"] == 251  # the deposit, then 250 debits, none skipped
    _assert_ledger_sound(db, [hot, *destinations], 50_000)
    assert (
        db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = ANY(CAST(:ids AS uuid[]))", ids=ids)
        == 500
    )


def test_concurrent_batches_and_single_transfers_through_one_hot_wallet(api, db):
    owner = api.signup()
    payers = [api.funded_wallet(owner, 1_000) for _ in range(12)]
    hot = api.create_wallet(owner)
    payees = [api.create_wallet(owner) for _ in range(3)]
    ids: list[str] = []
    lock = threading.Lock()

    def pay_in(chunk: list[str]) -> None:
        # Each payer asks for 15 transfers of 100 against 1,000: at least five of its transfers must fail.
        items = [bulk_item(payer, hot, 100) for payer in chunk for _ in range(15)]
        for start in range(0, len(items), 40):
            response = api.transfer_batch(owner, items[start : start + 40])
            assert response.status_code == 202, response.json
            with lock:
                ids.extend(item["transaction"]["id"] for item in response.json["items"])

    def pay_out(payee: str) -> None:
        # Out of a wallet that starts empty: whether each succeeds depends on what has arrived.
        for _ in range(25):
            response = api.transfer(owner, hot, payee, 300)
            assert response.status_code == 202, response.json
            with lock:
                ids.append(response.json["id"])

    threads = [threading.Thread(target=pay_in, args=(payers[n::3],)) for n in range(3)]
    threads += [threading.Thread(target=pay_out, args=(payee,)) for payee in payees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _wait_all_final(db, ids)

    assert len(ids) == 12 * 15 + 3 * 25
    statuses = dict(
        db.rows(
            "SELECT status, count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status", ids=ids
        )
    )
    assert set(statuses) <= {"COMPLETED", "FAILED"}
    assert statuses["FAILED"] >= 12 * 5
    failures = db.scalar(
        "SELECT count(*) FROM transactions WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'FAILED'"
        " AND failure_reason <> 'INSUFFICIENT_FUNDS'",
        ids=ids,
    )
    assert failures == 0
    _assert_ledger_sound(db, [*payers, hot, *payees], 12 * 1_000)
    for payer in payers:  # a payer pays exactly for its completed transfers
        paid = db.scalar(
            "SELECT coalesce(sum(amount), 0) FROM transactions WHERE source_wallet_id = :w"
            " AND status = 'COMPLETED' AND type = 'TRANSFER'",
            w=payer,
        )
        assert api.wallet(owner, payer)["balance"] == 1_000 - paid
