"""Cross-organisation transfers: one DEBIT and one CREDIT, plus a CLEARING obligation that keeps every
organisation's books, and the whole system's, at zero per currency."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from models.db import get_engine


def rows(sql: str, **params: Any) -> list[Any]:
    with get_engine().connect() as connection:
        return list(connection.execute(text(sql), params).all())


def execute(sql: str, **params: Any) -> None:
    with get_engine().begin() as connection:
        connection.execute(text(sql), params)


def scalar(sql: str, **params: Any) -> Any:
    with get_engine().connect() as connection:
        return connection.execute(text(sql), params).scalar()


def system_wallet(organization_id: str, name: str, currency: str = "INR") -> Any:
    """(id, balance, status) of an organisation's SYSTEM wallet of that name, or None."""
    found = rows(
        "SELECT id::text, balance, status FROM wallets WHERE organization_id = :org AND type = 'SYSTEM'"
        " AND name = :name AND currency = :currency",
        org=organization_id,
        name=name,
        currency=currency,
    )
    return found[0] if found else None


def system_balance(organization_id: str, name: str, currency: str = "INR") -> int:
    wallet = system_wallet(organization_id, name, currency)
    return 0 if wallet is None else int(wallet.balance)


def organization_total(organization_id: str, currency: str = "INR") -> int:
    return int(
        scalar(
            "SELECT coalesce(sum(balance), 0) FROM wallets WHERE organization_id = :org AND currency = :currency",
            org=organization_id,
            currency=currency,
        )
    )


def currency_totals() -> dict[str, int]:
    return {r.currency: int(r.total) for r in rows("SELECT currency, sum(balance) AS total FROM wallets GROUP BY 1")}


def obligation_of(transfer_id: str) -> Any:
    found = rows(
        "SELECT id::text, status, type, amount, source_wallet_id::text AS source,"
        " destination_wallet_id::text AS destination, settlement_batch_id::text AS batch"
        " FROM transactions WHERE parent_transaction_id = :id",
        id=transfer_id,
    )
    assert len(found) <= 1
    return found[0] if found else None


def entries_of(transaction_id: str) -> list[tuple[str, str, int]]:
    return sorted(
        (r.wallet_id, r.direction, int(r.amount))
        for r in rows(
            "SELECT wallet_id::text, direction, amount FROM ledger_entries WHERE transaction_id = :id",
            id=transaction_id,
        )
    )


def test_cross_org_transfer_posts_one_debit_one_credit_and_an_obligation(api):
    alice, bob = api.signup("Alice Bank"), api.signup("Bob Bank")
    source = api.funded_wallet(alice, 10_000)
    destination = api.create_wallet(bob)

    transfer = api.wait_final(alice, api.transfer(alice, source, destination, 3_000).json["id"])
    assert transfer["status"] == "COMPLETED"
    assert api.wallet(bob, destination)["balance"] == 3_000  # at once, for both users
    assert entries_of(transfer["id"]) == sorted([(source, "DEBIT", 3_000), (destination, "CREDIT", 3_000)])

    alice_clearing = system_wallet(alice.organization_id, "clearing")
    bob_clearing = system_wallet(bob.organization_id, "clearing")
    obligation = obligation_of(transfer["id"])
    assert (obligation.type, obligation.status, obligation.amount) == ("CLEARING", "COMPLETED", 3_000)
    # Bob's organisation is owed (its clearing wallet debited), Alice's owes (credited).
    assert (obligation.source, obligation.destination) == (bob_clearing.id, alice_clearing.id)
    assert entries_of(obligation.id) == sorted(
        [(bob_clearing.id, "DEBIT", 3_000), (alice_clearing.id, "CREDIT", 3_000)]
    )
    assert (alice_clearing.balance, bob_clearing.balance) == (3_000, -3_000)
    assert obligation.batch is None

    assert organization_total(alice.organization_id) == 0
    assert organization_total(bob.organization_id) == 0
    assert all(total == 0 for total in currency_totals().values())


def test_same_org_and_failed_transfers_leave_no_obligation(api):
    alice, bob = api.signup(), api.signup()
    source = api.funded_wallet(alice, 1_000)
    internal = api.wait_final(alice, api.transfer(alice, source, api.create_wallet(alice), 100).json["id"])
    assert internal["status"] == "COMPLETED" and obligation_of(internal["id"]) is None

    too_much = api.wait_final(alice, api.transfer(alice, source, api.create_wallet(bob), 5_000).json["id"])
    assert too_much["failure_reason"] == "INSUFFICIENT_FUNDS"
    assert obligation_of(too_much["id"]) is None
    assert entries_of(too_much["id"]) == []
    assert system_balance(alice.organization_id, "clearing") == 0
    assert system_balance(bob.organization_id, "clearing") == 0


def test_currency_mismatch_across_orgs_fails_without_a_clearing_wallet_in_that_currency(api):
    alice, bob = api.signup(), api.signup()
    source = api.funded_wallet(alice, 1_000)
    usd_destination = api.create_wallet(bob, currency="USD")
    failed = api.wait_final(alice, api.transfer(alice, source, usd_destination, 100, currency="INR").json["id"])
    assert failed["failure_reason"] == "CURRENCY_MISMATCH"
    assert system_wallet(bob.organization_id, "clearing", "USD") is None
    assert system_wallet(bob.organization_id, "clearing", "INR") is None


def test_a_locked_clearing_wallet_stops_cross_org_transfers(api):
    alice, bob = api.signup(), api.signup()
    source = api.funded_wallet(alice, 1_000)
    destination = api.create_wallet(bob)
    assert api.wait_final(alice, api.transfer(alice, source, destination, 100).json["id"])["status"] == "COMPLETED"
    bob_clearing = system_wallet(bob.organization_id, "clearing")
    # The API refuses to lock a clearing wallet with unsettled obligations: locked behind its back.
    execute("UPDATE wallets SET status = 'LOCKED' WHERE id = :id", id=bob_clearing.id)

    refused = api.wait_final(alice, api.transfer(alice, source, destination, 100).json["id"])
    assert (refused["status"], refused["failure_reason"]) == ("FAILED", "WALLET_NOT_ACTIVE")
    assert obligation_of(refused["id"]) is None
    assert api.wallet(alice, source)["balance"] == 900
    assert system_balance(bob.organization_id, "clearing") == -100
    # Money still moves inside each organisation.
    internal = api.wait_final(alice, api.transfer(alice, source, api.create_wallet(alice), 50).json["id"])
    assert internal["status"] == "COMPLETED"
    execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = :id", id=bob_clearing.id)  # settles in a later batch


def test_many_concurrent_cross_org_transfers_keep_every_book_at_zero(api):
    banks = [api.signup() for _ in range(3)]
    sources = [api.funded_wallet(bank, 50_000) for bank in banks]
    destinations = [api.create_wallet(bank) for bank in banks]
    ids = []
    for round_ in range(10):
        for i, bank in enumerate(banks):
            to = (i + 1 + round_ % 2) % len(banks)
            response = api.transfer(bank, sources[i], destinations[to], 100 + round_)
            assert response.status_code == 202
            ids.append((bank, response.json["id"]))
    assert all(api.wait_final(bank, transaction_id)["status"] == "COMPLETED" for bank, transaction_id in ids)
    for bank in banks:
        assert organization_total(bank.organization_id) == 0
    assert all(total == 0 for total in currency_totals().values())
    assert (
        scalar(
            "SELECT count(*) FROM transactions"
            " WHERE type = 'CLEARING' AND parent_transaction_id = ANY(CAST(:ids AS uuid[]))",
            ids=[transaction_id for _, transaction_id in ids],
        )
        == 30
    )
