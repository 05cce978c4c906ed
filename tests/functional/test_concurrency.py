"""Many transfers at once among a few wallets: money is conserved and every intent ends final."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

WALLETS = 10
TRANSFERS = 240
THREADS = 16
OPENING_BALANCE = 2_000


def test_concurrent_transfers_conserve_money(api, db):
    owner = api.signup()
    wallets = [api.funded_wallet(owner, OPENING_BALANCE) for _ in range(WALLETS)]
    rng = random.Random(7)
    pairs = [(*tuple(rng.sample(wallets, 2)), rng.randint(1, 900)) for _ in range(TRANSFERS)]

    def post(pair):
        source, destination, amount = pair
        response = api.transfer(owner, source, destination, amount)
        assert response.status_code == 202, response.json
        return response.json["id"]

    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(post, pairs))
    with ThreadPoolExecutor(THREADS) as pool:
        finals = list(pool.map(lambda i: api.wait_final(owner, i, seconds=60), ids))

    statuses = [f["status"] for f in finals]
    assert set(statuses) <= {"COMPLETED", "FAILED"}, statuses
    assert {f["failure_reason"] for f in finals if f["status"] == "FAILED"} <= {"INSUFFICIENT_FUNDS"}
    assert statuses.count("COMPLETED") > TRANSFERS // 3  # the test must exercise real postings

    balances = [api.wallet(owner, w)["balance"] for w in wallets]
    assert min(balances) >= 0
    assert sum(balances) == WALLETS * OPENING_BALANCE
    assert db.wallet_drift(wallets) == []
    assert db.broken_chains(wallets) == []
    entries = db.scalar("SELECT count(*) FROM ledger_entries WHERE transaction_id = ANY(CAST(:ids AS uuid[]))", ids=ids)
    assert entries == 2 * statuses.count("COMPLETED")
