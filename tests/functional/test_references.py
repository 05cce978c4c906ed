"""References checked per statement (migration 0008): each one refuses what its foreign key refused,
in one row or among many, and nothing they name can go away or change its id."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg.errors
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ledger.settlement.plan import PlannedEntry
from ledger.settlement.posting import _write_entries
from models import Direction
from models.db import get_engine, session_factory

MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0008_statement_references.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("statement_references", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCES: dict[str, list[tuple[str, str, bool]]] = _migration().REFERENCES

# A valid row for each table, by its references and what else it needs; `:n` makes it unique.
INSERTS = {
    "transactions": """
        INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                  source_wallet_id, destination_wallet_id)
        SELECT gen_random_uuid(), :organization_id, :created_by, 'TRANSFER', 'PENDING', 1, 'INR',
               :source_wallet_id, :destination_wallet_id
          FROM generate_series(1, :n)
    """,
    "ledger_entries": """
        INSERT INTO ledger_entries (wallet_id, transaction_id, direction, amount, balance_after, wallet_version)
        SELECT :wallet_id, :transaction_id, 'CREDIT', 1, 1, :first_version + i FROM generate_series(1, :n) AS i
    """,
    "audit_logs": """
        INSERT INTO audit_logs (id, organization_id, actor_id, action)
        SELECT gen_random_uuid(), :organization_id, :actor_id, 'test.reference' FROM generate_series(1, :n)
    """,
    "idempotency_keys": """
        INSERT INTO idempotency_keys (organization_id, key, request_hash, transaction_id)
        SELECT :organization_id, 'reference-' || gen_random_uuid(), 'hash', :transaction_id FROM generate_series(1, :n)
    """,
}


@pytest.fixture(scope="module")
def parties(app, worker) -> dict[str, str]:
    """Rows every reference can name: an organisation, its owner, two wallets and a transfer."""
    from tests.client import ApiClient

    api = ApiClient(app)
    owner = api.signup()
    source = api.funded_wallet(owner, 100)
    destination = api.create_wallet(owner)
    accepted = api.transfer(owner, source, destination, 1).json
    assert accepted is not None
    return {
        "organization_id": owner.organization_id,
        "created_by": owner.id,
        "actor_id": owner.id,
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "wallet_id": destination,
        "transaction_id": accepted["id"],
        "first_version": 1_000_000,
    }


@pytest.fixture
def connection() -> Iterator[Connection]:
    """A transaction rolled back at the end: nothing a test writes here stays. REPEATABLE READ, so its
    counts see one snapshot plus its own writes, not rows the worker commits meanwhile (the parties'
    transfer settles whenever the worker gets to it)."""
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin() as transaction:
            yield connection
            transaction.rollback()


def _refusal(connection: Connection, sql: str, parameters: dict[str, Any]) -> psycopg.Error:
    savepoint = connection.begin_nested()
    try:
        with pytest.raises(DBAPIError) as refused:
            connection.execute(text(sql), parameters)
    finally:
        savepoint.rollback()
    assert isinstance(refused.value.orig, psycopg.Error)
    return refused.value.orig


def _count(connection: Connection, table: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


CASES = [(table, column, referenced) for table, refs in REFERENCES.items() for column, referenced, _ in refs]


@pytest.mark.parametrize("rows", [1, 300])
@pytest.mark.parametrize(("table", "column", "referenced"), CASES)
def test_a_reference_to_no_row_is_refused_and_writes_nothing(parties, connection, table, column, referenced, rows):
    before = _count(connection, table)
    connection.execute(text(INSERTS[table]), {**parties, "n": rows})  # the valid rows go in
    assert _count(connection, table) == before + rows

    # The same statement with one reference pointing nowhere: refused as a foreign key refused it.
    nowhere = {column: str(uuid.uuid4()), "first_version": 2_000_000}
    error = _refusal(connection, INSERTS[table], {**parties, **nowhere, "n": rows})
    assert isinstance(error, psycopg.errors.ForeignKeyViolation)
    assert f"({column} -> {referenced})" in str(error)
    assert _count(connection, table) == before + rows


@pytest.mark.parametrize(("table", "column"), [("audit_logs", "organization_id"), ("audit_logs", "actor_id")])
def test_a_null_reference_is_allowed_where_the_column_is_nullable(parties, connection, table, column):
    connection.execute(text(INSERTS[table]), {**parties, column: None, "n": 1})


def test_one_bad_entry_in_a_copy_refuses_the_whole_batch(parties):
    """The settlement path: a batch's entries arrive by COPY, and one bad wallet among them refuses all."""
    wallet, transaction = uuid.UUID(parties["wallet_id"]), uuid.UUID(parties["transaction_id"])
    entries = [PlannedEntry(wallet, transaction, Direction.CREDIT, 1, 1, 3_000_000 + i) for i in range(500)]
    entries.insert(250, entries[250]._replace(wallet_id=uuid.uuid4(), wallet_version=1))
    session = session_factory()()
    try:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the driver's own COPY
            _write_entries(session, entries, datetime.now(UTC))
    finally:
        session.rollback()
        session.close()
    with get_engine().connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM ledger_entries WHERE wallet_version >= 3000000")).scalar_one()
            == 0
        )


@pytest.mark.parametrize("rows", [1, 300])
def test_the_check_probes_each_reference_and_never_scans_a_table(parties, connection, rows):
    """One index lookup per reference, for one row or many: never a read of the whole table."""
    tables = ("organizations", "users", "wallets", "transactions")

    def sequential_scans() -> dict[str, int]:
        return {
            table: connection.execute(text(f"SELECT pg_stat_get_xact_numscans('{table}'::regclass)")).scalar_one()
            for table in tables
        }

    before = sequential_scans()
    for sql in INSERTS.values():
        connection.execute(text(sql), {**parties, "n": rows})
    assert sequential_scans() == before


def test_each_distinct_reference_is_probed_once_per_statement(parties, connection):
    """A bulk intake's rows all name one organisation and one creator, a settlement batch's entries
    each transaction twice: the check looks each value up once (migration 0025), not once per row."""
    probes = {
        "organizations": "pk_organizations",
        "users": "pk_users",
        "wallets": "pk_wallets",
        "transactions": "pk_transactions",
    }

    def index_scans() -> dict[str, int]:
        return {
            table: connection.execute(text(f"SELECT pg_stat_get_xact_numscans('{index}'::regclass)")).scalar_one()
            for table, index in probes.items()
        }

    before = index_scans()
    connection.execute(text(INSERTS["transactions"]), {**parties, "n": 300})
    after = index_scans()
    # One organisation, one creator, a source and a destination wallet, whatever the row count.
    assert after["organizations"] - before["organizations"] == 1
    assert after["users"] - before["users"] == 1
    assert after["wallets"] - before["wallets"] == 2

    connection.execute(text(INSERTS["ledger_entries"]), {**parties, "n": 300})
    entries = index_scans()
    assert entries["wallets"] - after["wallets"] == 1
    assert entries["transactions"] - after["transactions"] == 1


KEPT = [
    ("organizations", "organization_id"),
    ("users", "created_by"),
    ("wallets", "source_wallet_id"),
    ("transactions", "transaction_id"),
]


@pytest.mark.parametrize(("table", "party"), KEPT)
@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM {table} WHERE id = :id",
        "UPDATE {table} SET id = gen_random_uuid() WHERE id = :id",
        "TRUNCATE {table} CASCADE",
    ],
)
def test_a_referenced_row_never_goes_away_or_changes_its_id(parties, connection, table, party, statement):
    error = _refusal(connection, statement.format(table=table), {"id": parties[party]})
    assert isinstance(error, psycopg.errors.RestrictViolation)
    assert (
        connection.execute(text(f"SELECT count(*) FROM {table} WHERE id = :id"), {"id": parties[party]}).scalar_one()
        == 1
    )


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("UPDATE transactions SET source_wallet_id = :destination_wallet_id WHERE id = :transaction_id", "source"),
        ("UPDATE transactions SET destination_wallet_id = :source_wallet_id WHERE id = :transaction_id", "destination"),
        ("UPDATE transactions SET organization_id = :organization_id WHERE id = :transaction_id", "organization"),
        ("UPDATE transactions SET created_by = NULL WHERE id = :transaction_id", "creator"),
        (
            "UPDATE idempotency_keys SET organization_id = :organization_id WHERE transaction_id = :transaction_id",
            "key",
        ),
    ],
)
def test_the_references_a_row_carries_never_change(parties, connection, sql, column):
    error = _refusal(connection, sql, parties)
    assert isinstance(error, psycopg.errors.RestrictViolation), column
