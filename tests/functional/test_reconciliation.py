"""Reconciliation finds drift made behind the application's back, names it, and never fixes it.

Each tampering test undoes its damage afterwards, so platform-wide runs elsewhere stay clean.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner


def sql(statement: str, *params: object) -> list[tuple]:
    """Run SQL directly against the database, outside the application."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def behind_the_triggers(*statements: tuple[str, tuple]) -> None:
    """Change ledger_entries as an attacker with table rights would: triggers off, change, triggers on."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection, connection.transaction():
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        for statement, params in statements:
            connection.execute(statement, params)
        connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")


def run(api, user, mode: str = "FULL", **extra: object) -> dict:
    response = api.post("/reconciliation/run", user, json={"mode": mode, **extra})
    assert response.status_code == 201, response.json
    return dict(response.json)


def findings_for(result: dict, check: str, **match: str) -> list[dict]:
    return [f for f in result["findings"] if f["check"] == check and all(f[k] == v for k, v in match.items())]


@pytest.fixture
def org(api):
    """An organisation with a little history: two deposits and a transfer."""
    owner = api.signup()
    source = api.funded_wallet(owner, 10_000)
    destination = api.funded_wallet(owner, 500)
    transfer = api.transfer(owner, source, destination, 1_250).json
    assert api.wait_final(owner, transfer["id"])["status"] == "COMPLETED"
    return owner, source, destination, transfer["id"]


@pytest.fixture
def operator(api):
    from ledger.identity import create_operator
    from models.db import session_factory

    email = f"operator-{uuid.uuid4().hex[:10]}@example.com"
    with session_factory().begin() as session:
        user = create_operator(session, email=email, password="correct horse", full_name="Operator")
        user_id, organization_id = str(user.id), str(user.organization_id)
    return api.login(email, "correct horse", user_id, organization_id)


def test_an_untouched_ledger_is_clean_in_both_modes(api, org):
    owner, _source, _destination, _ = org
    full = run(api, owner, "FULL")
    assert full["status"] == "CLEAN", full["findings"]
    assert full["findings"] == [] and full["findings_count"] == 0
    assert full["wallets_checked"] >= 3  # two wallets and the treasury
    assert full["entries_checked"] == 6  # two deposits and a transfer, two entries each
    incremental = run(api, owner, "INCREMENTAL")
    assert incremental["status"] == "CLEAN"
    # Nothing changed since the full run proved every wallet: the incremental run checks nothing.
    assert incremental["wallets_checked"] == 0 and incremental["entries_checked"] == 0


@pytest.fixture
def cached_balance_plus_one(org) -> Iterator[tuple]:
    _owner, source, _destination, _ = org
    sql("UPDATE wallets SET balance = balance + 1 WHERE id = %s", source)
    yield org
    sql("UPDATE wallets SET balance = balance - 1 WHERE id = %s", source)


def test_a_cached_balance_off_by_one_is_named_with_its_difference(api, cached_balance_plus_one, caplog):
    owner, source, _destination, _ = cached_balance_plus_one
    with caplog.at_level(logging.CRITICAL, logger="ledger.integrity.reconciliation"):
        result = run(api, owner, "INCREMENTAL")
    assert result["status"] == "DRIFT"
    [finding] = findings_for(result, "BALANCE_MISMATCH", wallet_id=source)
    assert (finding["expected"], finding["actual"], finding["difference"]) == (8_750, 8_751, 1)
    assert finding["organization_id"] == owner.organization_id
    # Logged at CRITICAL naming the wallet and the difference.
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any(source in r.getMessage() and "difference 1" in r.getMessage() for r in critical)
    # Recorded: the run and its finding read back the same way.
    stored = api.get(f"/reconciliation/runs/{result['id']}", owner).json
    assert stored["status"] == "DRIFT" and stored["findings"] == result["findings"]
    # Emitted as an event in the outbox, in the run's own transaction.
    [(payload,)] = sql(
        "SELECT payload FROM outbox_events WHERE event_type = 'reconciliation.drift_found' AND aggregate_id = %s",
        result["id"],
    )
    assert payload["findings_count"] == result["findings_count"]
    assert any(f["wallet_id"] == source and f["difference"] == 1 for f in payload["findings"])
    # Never fixed: the cached balance is still wrong after the run.
    assert api.wallet(owner, source)["balance"] == 8_751


def test_drift_stays_reported_until_repaired_then_clears(api, org):
    owner, source, _destination, _ = org
    assert run(api, owner, "FULL")["status"] == "CLEAN"  # every wallet marked clean
    sql("UPDATE wallets SET balance = balance - 1 WHERE id = %s", source)
    try:
        for _ in range(2):  # a wallet with drift loses its mark, so every run names it again
            result = run(api, owner, "INCREMENTAL")
            [finding] = findings_for(result, "BALANCE_MISMATCH", wallet_id=source)
            assert finding["difference"] == -1
    finally:
        sql("UPDATE wallets SET balance = balance + 1 WHERE id = %s", source)
    assert run(api, owner, "INCREMENTAL")["status"] == "CLEAN"


@pytest.fixture
def deleted_entry(org) -> Iterator[tuple]:
    """The first entry of the destination wallet (its deposit), deleted with the triggers off."""
    _owner, _source, destination, _ = org
    [row] = sql(
        "SELECT id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version, created_at"
        " FROM ledger_entries WHERE wallet_id = %s AND wallet_version = 1",
        destination,
    )
    behind_the_triggers(("DELETE FROM ledger_entries WHERE id = %s", (row[0],)))
    yield (*org, row)
    behind_the_triggers(
        (
            "INSERT INTO ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after,"
            " wallet_version, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            row,
        )
    )


def test_a_deleted_entry_is_found_and_named(api, deleted_entry):
    owner, _source, destination, _transfer, row = deleted_entry
    deposit_id = str(row[2])
    result = run(api, owner, "FULL")
    assert result["status"] == "DRIFT"
    # The wallet's balance no longer equals its entries: the missing deposit of 500.
    [balance] = findings_for(result, "BALANCE_MISMATCH", wallet_id=destination)
    assert (balance["expected"], balance["actual"], balance["difference"]) == (1_250, 1_750, 500)
    # The version chain has a hole where the entry was.
    [gap] = findings_for(result, "VERSION_GAP", wallet_id=destination)
    assert (gap["expected"], gap["actual"]) == (1, 2)
    [version] = findings_for(result, "VERSION_MISMATCH", wallet_id=destination)
    assert (version["expected"], version["actual"]) == (1, 2)
    # The deposit now has a lone debit: its entries no longer sum to zero.
    [unbalanced] = findings_for(result, "TRANSACTION_UNBALANCED", transaction_id=deposit_id)
    assert unbalanced["actual"] == -500


@pytest.fixture
def broken_balance_after(org) -> Iterator[tuple]:
    """The transfer's debit entry claims 5 more than the chain allows."""
    _owner, source, _destination, transfer_id = org
    [(entry_id, version)] = sql(
        "SELECT id, wallet_version FROM ledger_entries WHERE wallet_id = %s AND transaction_id = %s",
        source,
        transfer_id,
    )
    shift = "UPDATE ledger_entries SET balance_after = balance_after + %s WHERE id = %s"
    behind_the_triggers((shift, (5, entry_id)))
    yield (*org, version)
    behind_the_triggers((shift, (-5, entry_id)))


def test_a_broken_balance_after_is_found_and_named(api, broken_balance_after):
    owner, source, _destination, transfer_id, version = broken_balance_after
    result = run(api, owner, "FULL")
    assert result["status"] == "DRIFT"
    chain = findings_for(result, "BALANCE_CHAIN_BROKEN", wallet_id=source)
    assert chain, result["findings"]
    first = chain[0]
    assert first["transaction_id"] == transfer_id
    assert (first["expected"], first["actual"], first["difference"]) == (8_750, 8_755, 5)
    assert first["detail"] == {"wallet_version": version}
    # The cached balance itself still equals the sum of entries: only the chain is broken.
    assert not findings_for(result, "BALANCE_MISMATCH", wallet_id=source)


def test_a_platform_run_checks_each_currency_sums_to_zero(api, operator, cached_balance_plus_one, caplog):
    _owner, source, _destination, _ = cached_balance_plus_one
    with caplog.at_level(logging.CRITICAL, logger="ledger.integrity.reconciliation"):
        result = run(api, operator, "FULL")
    # The log names what drifted: a currency here, not a wallet.
    assert any(r.getMessage().startswith("ledger drift: CURRENCY_NOT_ZERO on currency INR") for r in caplog.records)
    assert result["organization_id"] is None  # the whole platform
    [currency] = findings_for(result, "CURRENCY_NOT_ZERO", currency="INR")
    assert (currency["expected"], currency["actual"], currency["difference"]) == (0, 1, 1)
    assert findings_for(result, "BALANCE_MISMATCH", wallet_id=source)
    # /metrics reports the last platform-wide run and its drift.
    metrics = api.app.test_client().get("/metrics").get_data(as_text=True)
    assert 'vaultcraft_reconciliation_last_clean{mode="FULL"} 0.0' in metrics
    assert f'vaultcraft_reconciliation_last_drift_findings{{mode="FULL"}} {float(result["findings_count"])}' in metrics


def test_incremental_cost_follows_new_activity(api, org):
    owner, source, destination, _ = org
    full = run(api, owner, "FULL")
    response = api.transfer(owner, source, destination, 10)
    assert api.wait_final(owner, response.json["id"])["status"] == "COMPLETED"
    incremental = run(api, owner, "INCREMENTAL")
    assert incremental["status"] == "CLEAN"
    assert incremental["wallets_checked"] == 2 < full["wallets_checked"]
    assert incremental["entries_checked"] == 2  # the new transfer's entries, not the ledger's


def test_runs_are_visible_only_to_their_organisation(api, org):
    owner, _source, _destination, _ = org
    result = run(api, owner, "INCREMENTAL")
    stranger = api.signup()
    assert api.get(f"/reconciliation/runs/{result['id']}", stranger).status_code == 404
    listed = api.get("/reconciliation/runs?limit=500", stranger).json["items"]
    assert result["id"] not in {r["id"] for r in listed}
    assert result["id"] in {r["id"] for r in api.get("/reconciliation/runs?limit=500", owner).json["items"]}
    # Only OWNER/ADMIN run it, and only for their own organisation.
    member = api.add_user(owner, "MEMBER")
    assert api.post("/reconciliation/run", member, json={}).status_code == 403
    other_org = {"organization_id": stranger.organization_id}
    assert api.post("/reconciliation/run", owner, json=other_org).status_code == 403
    assert api.post("/reconciliation/run", owner, json={"mode": "SOMETIMES"}).status_code == 422


def test_the_cli_prints_the_findings(api, cached_balance_plus_one):
    from ops.cli import main

    _owner, source, _destination, _ = cached_balance_plus_one
    outcome = CliRunner().invoke(main, ["reconcile", "--full"])
    assert outcome.exit_code == 2, outcome.output
    assert "DRIFT" in outcome.output
    assert any(
        source in line and "BALANCE_MISMATCH" in line and "difference 1" in line for line in outcome.output.splitlines()
    )


def test_the_cli_waits_for_a_run_in_progress_instead_of_failing(api):
    """Beat reconciles every 180 s: a `vaultcraft reconcile` typed at that moment found the run lock taken
    and exited 1 ("already in progress"). It waits for that run, within a bound, and then runs."""
    import threading
    import time

    from ledger.integrity.reconciliation import RUN_LOCK_KEY
    from ops.cli import main

    lock_held = threading.Event()

    def hold_the_run_lock(seconds: float) -> None:
        with psycopg.connect(os.environ["DATABASE_URL"]) as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (RUN_LOCK_KEY,))
            lock_held.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold_the_run_lock, args=(1.5,))
    holder.start()
    try:
        assert lock_held.wait(10)
        started = time.monotonic()
        outcome = CliRunner().invoke(main, ["reconcile"])
        waited = time.monotonic() - started
    finally:
        holder.join()
    assert outcome.exit_code in (0, 2), outcome.output  # 2 if another test's drift is on the books
    assert outcome.output.startswith("run "), outcome.output
    assert waited >= 1.0
