"""The whole pipeline once: signup, wallet, deposit, transfer, COMPLETED, balances and ledger."""

from __future__ import annotations


def test_transfer_reaches_completed_with_one_debit_and_one_credit(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)

    response = api.transfer(owner, source, destination, 2_500)
    assert response.status_code == 202
    assert response.json["status"] == "PENDING"
    assert response.headers["Location"] == f"/api/v1/transactions/{response.json['id']}"

    final = api.wait_final(owner, response.json["id"])
    assert final["status"] == "COMPLETED"
    assert final["completed_at"] is not None
    assert api.wallet(owner, source)["balance"] == 7_500
    assert api.wallet(owner, destination)["balance"] == 2_500

    entries = api.get(f"/transactions/{final['id']}/ledger", owner).json["items"]
    assert sorted((e["direction"], e["amount"], e["balance_after"]) for e in entries) == [
        ("CREDIT", 2_500, 2_500),
        ("DEBIT", 2_500, 7_500),
    ]
