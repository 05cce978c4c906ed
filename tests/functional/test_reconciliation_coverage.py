"""Incremental reconciliation keeps seeing drift: past its findings cap, behind an untouched wallet row,
on intents that never completed, and in clearing wallets that no longer match their obligations.

Every tampering test undoes its damage (and forgets the marks it left), so platform-wide runs
elsewhere stay clean.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from ledger.integrity.reconciliation import FINDINGS_PER_CHECK_MAX
from tests.functional.test_reconciliation import behind_the_triggers, findings_for, run, sql


def forget_marks(*wallet_ids: str) -> None:
    """What a repair leaves: the marks of wallets a test tampered with, proven afresh by the next run."""
    sql("DELETE FROM reconciliation_marks WHERE wallet_id = ANY(%s::uuid[])", list(wallet_ids))


def wallet_findings(result: dict, check: str) -> set[str]:
    return {f["wallet_id"] for f in findings_for(result, check)}


# --- past the findings cap ------------------------------------------------------------------------

DRIFTED_WALLETS = FINDINGS_PER_CHECK_MAX + 7


@pytest.fixture
def many_wallets(api) -> Iterator[tuple]:
    """An organisation with more empty wallets than one check reports, written by SQL."""
    owner = api.signup()
    rows = sql(
        "INSERT INTO wallets (id, organization_id, owner_id, type, currency, status, name, balance, version)"
        " SELECT gen_random_uuid(), %s, %s, 'PRIMARY', 'INR', 'ACTIVE', 'bulk-' || n, 0, 0"
        "   FROM generate_series(1, %s) AS n RETURNING id",
        owner.organization_id,
        owner.id,
        DRIFTED_WALLETS,
    )
    wallet_ids = [str(row[0]) for row in rows]
    yield owner, wallet_ids
    sql("UPDATE wallets SET balance = 0 WHERE id = ANY(%s::uuid[])", wallet_ids)
    forget_marks(*wallet_ids)


def test_drift_past_the_cap_is_reported_by_the_next_incremental_run(api, many_wallets):
    owner, wallet_ids = many_wallets
    assert run(api, owner, "INCREMENTAL")["status"] == "CLEAN"  # every wallet marked at 0
    sql("UPDATE wallets SET balance = 7 WHERE id = ANY(%s::uuid[])", wallet_ids)

    capped = run(api, owner, "INCREMENTAL")
    first = wallet_findings(capped, "BALANCE_MISMATCH")
    assert len(first) == FINDINGS_PER_CHECK_MAX
    assert capped["findings_count"] == FINDINGS_PER_CHECK_MAX

    # The wallets the cap cut off kept their marks: the next incremental run names them (first).
    following = run(api, owner, "INCREMENTAL")
    second = wallet_findings(following, "BALANCE_MISMATCH")
    assert set(wallet_ids) - first <= second
    assert first | second == set(wallet_ids)
    # And nobody is forgotten later either: drift stays reported until it is repaired.
    assert len(wallet_findings(run(api, owner, "INCREMENTAL"), "BALANCE_MISMATCH")) == FINDINGS_PER_CHECK_MAX


def test_a_capped_full_run_leaves_the_rest_to_the_next_incremental_run(api, many_wallets):
    owner, wallet_ids = many_wallets
    sql("UPDATE wallets SET balance = 3 WHERE id = ANY(%s::uuid[])", wallet_ids)
    first = wallet_findings(run(api, owner, "FULL"), "BALANCE_MISMATCH")
    assert len(first) == FINDINGS_PER_CHECK_MAX
    second = wallet_findings(run(api, owner, "INCREMENTAL"), "BALANCE_MISMATCH")
    assert first | second == set(wallet_ids)


# --- an entry written while its wallet row was not --------------------------------------------------


@pytest.fixture
def org(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.funded_wallet(owner, 500)
    transfer = api.transfer(owner, source, destination, 1_250).json
    assert api.wait_final(owner, transfer["id"])["status"] == "COMPLETED"
    return owner, source, destination, transfer["id"]


@pytest.fixture
def entry_behind_the_wallet(org) -> Iterator[tuple]:
    """One more CREDIT of 100 on the destination, chained correctly; its wallet row is left as it was."""
    _owner, _source, destination, transfer_id = org
    [(version, balance)] = sql("SELECT version, balance FROM wallets WHERE id = %s", destination)
    entry_id = str(uuid.uuid4())
    sql(
        "INSERT INTO ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version)"
        " VALUES (%s, %s, %s, 'CREDIT', 100, %s, %s)",
        entry_id,
        destination,
        transfer_id,
        balance + 100,
        version + 1,
    )
    yield (*org, balance, version)
    behind_the_triggers(("DELETE FROM ledger_entries WHERE id = %s", (entry_id,)))
    forget_marks(destination)


def test_an_entry_behind_an_untouched_wallet_row_is_found_incrementally(api, org, request):
    owner, _source, destination, _ = org
    assert run(api, owner, "FULL")["status"] == "CLEAN"  # every wallet marked, the destination too
    _, _, _, _, balance, version = request.getfixturevalue("entry_behind_the_wallet")
    result = run(api, owner, "INCREMENTAL")
    [mismatch] = findings_for(result, "BALANCE_MISMATCH", wallet_id=destination)
    assert (mismatch["expected"], mismatch["actual"]) == (balance + 100, balance)
    [count] = findings_for(result, "VERSION_MISMATCH", wallet_id=destination)
    assert (count["expected"], count["actual"]) == (version + 1, version)


# --- intents that never completed ---------------------------------------------------------------------


@pytest.fixture
def pending_with_entries(api, org) -> Iterator[tuple]:
    """A PENDING transfer with a DEBIT and a CREDIT entry, held locked so no settle task claims it."""
    owner, source, destination, _ = org
    transaction_id = str(uuid.uuid4())
    sql(
        "INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,"
        " source_wallet_id, destination_wallet_id) VALUES (%s, %s, %s, 'TRANSFER', 'PENDING', 5, 'INR', %s, %s)",
        transaction_id,
        owner.organization_id,
        owner.id,
        source,
        destination,
    )
    with psycopg.connect(os.environ["DATABASE_URL"]) as lock:
        lock.execute("SELECT FROM transactions WHERE id = %s FOR UPDATE", (transaction_id,))
        entries = []
        for wallet, direction, signed in ((source, "DEBIT", -5), (destination, "CREDIT", 5)):
            [(entry_id,)] = sql(
                "INSERT INTO ledger_entries (wallet_id, transaction_id, direction, amount, balance_after,"
                " wallet_version) SELECT id, %s, %s, 5, balance + %s, version + 1 FROM wallets WHERE id = %s"
                " RETURNING id",
                transaction_id,
                direction,
                signed,
                wallet,
            )
            entries.append(str(entry_id))
        yield (*org, transaction_id)
        behind_the_triggers(("DELETE FROM ledger_entries WHERE id = ANY(%s::uuid[])", (entries,)))
        lock.execute(
            "UPDATE transactions SET status = 'CANCELLED', completed_at = clock_timestamp() WHERE id = %s",
            (transaction_id,),
        )
        lock.commit()
    forget_marks(source, destination)


def test_a_pending_transaction_with_entries_is_found_by_a_platform_incremental_run(api, request):
    operator = api.operator()
    owner, *_ = request.getfixturevalue("org")
    # As a clean platform-wide run leaves it: incremental transaction checks resume from now.
    sql(
        "INSERT INTO reconciliation_cursors (name, completed_through) VALUES ('platform', now())"
        " ON CONFLICT (name) DO UPDATE SET completed_through = EXCLUDED.completed_through"
    )
    *_, transaction_id = request.getfixturevalue("pending_with_entries")
    result = run(api, operator, "INCREMENTAL")
    [finding] = findings_for(result, "ENTRIES_ON_UNPOSTED_TRANSACTION", transaction_id=transaction_id)
    assert finding["detail"]["status"] == "PENDING" and finding["actual"] == 2
    assert finding["organization_id"] == owner.organization_id


# --- clearing wallets against their unsettled obligations ----------------------------------------------


def clearing_wallet(organization_id: str) -> tuple[str, int]:
    [(wallet_id, balance)] = sql(
        "SELECT id, balance FROM wallets WHERE organization_id = %s AND type = 'SYSTEM' AND name = 'clearing'",
        organization_id,
    )
    return str(wallet_id), balance


def post_behind_the_api(source: str, destination: str, amount: int) -> None:
    """A COMPLETED transfer written by SQL: a correct DEBIT and CREDIT, both wallet rows updated to match."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection, connection.transaction():
        connection.execute(
            "SELECT FROM wallets WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE", ([source, destination],)
        )
        transaction_id = str(uuid.uuid4())
        connection.execute(
            "INSERT INTO transactions (id, organization_id, type, status, amount, currency, source_wallet_id,"
            " destination_wallet_id, completed_at) SELECT %s, organization_id, 'TRANSFER', 'COMPLETED', %s,"
            " currency, %s, %s, clock_timestamp() FROM wallets WHERE id = %s",
            (transaction_id, amount, source, destination, source),
        )
        for wallet, direction, signed in ((source, "DEBIT", -amount), (destination, "CREDIT", amount)):
            connection.execute(
                "INSERT INTO ledger_entries (wallet_id, transaction_id, direction, amount, balance_after,"
                " wallet_version) SELECT id, %s, %s, %s, balance + %s, version + 1 FROM wallets WHERE id = %s",
                (transaction_id, direction, amount, signed, wallet),
            )
            connection.execute(
                "UPDATE wallets SET balance = balance + %s, version = version + 1 WHERE id = %s", (signed, wallet)
            )


@pytest.fixture
def two_orgs(api):
    """Alice's organisation pays Bob's 300, Bob's pays Alice's 100: Alice's owes 200 net."""
    alice, bob = api.signup(), api.signup()
    a, b = api.funded_wallet(alice, 10_000), api.funded_wallet(bob, 10_000)
    for user, source, destination, amount in ((alice, a, b, 300), (bob, b, a, 100)):
        transfer = api.transfer(user, source, destination, amount).json
        assert api.wait_final(user, transfer["id"])["status"] == "COMPLETED"
    return alice, bob, a, b


def test_clearing_wallets_equal_their_unsettled_obligations_before_and_after_a_batch(api, two_orgs):
    alice, bob, _a, _b = two_orgs
    assert clearing_wallet(alice.organization_id)[1] == 200
    assert clearing_wallet(bob.organization_id)[1] == -200
    for user in (alice, bob):
        for mode in ("FULL", "INCREMENTAL"):
            result = run(api, user, mode)
            assert result["status"] == "CLEAN", result["findings"]
    api.run_settlement(api.operator())
    assert clearing_wallet(alice.organization_id)[1] == clearing_wallet(bob.organization_id)[1] == 0
    for user in (alice, bob):
        for mode in ("INCREMENTAL", "FULL"):
            result = run(api, user, mode)
            assert result["status"] == "CLEAN", result["findings"]


def test_money_sent_straight_into_a_clearing_wallet_is_a_finding(api, two_orgs):
    _alice, bob, a, _b = two_orgs
    bob_clearing, owed = clearing_wallet(bob.organization_id)
    assert run(api, bob, "FULL")["status"] == "CLEAN"
    post_behind_the_api(a, bob_clearing, 40)  # balanced entries, but no obligation behind them
    try:
        for mode in ("INCREMENTAL", "FULL"):
            result = run(api, bob, mode)
            [finding] = findings_for(result, "CLEARING_BALANCE_MISMATCH", wallet_id=bob_clearing)
            assert (finding["expected"], finding["actual"], finding["difference"]) == (owed, owed + 40, 40)
            assert finding["organization_id"] == bob.organization_id
            assert result["findings_count"] == 1, result["findings"]  # every other check holds
    finally:
        post_behind_the_api(bob_clearing, a, 40)  # sent back: the clearing wallet matches again
        forget_marks(a, bob_clearing)
    assert run(api, bob, "FULL")["status"] == "CLEAN"
