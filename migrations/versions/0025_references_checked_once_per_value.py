"""References checked once per distinct value in a statement, not once per row.

The statement triggers of migration 0008 probed every reference of every new row: a bulk intake of
1,000 transfers looked its organisation up 2,000 times (each intent and each audit row names it),
its caller 2,000 times and its key's organisation 1,000 more; a settlement batch looked each
settled transaction up twice (its DEBIT and its CREDIT entry name it), and a hot wallet once per
entry. Each probe is an index descent and a heap fetch: about 7 of the 44 shared blocks the intake
statement read per intent, and a third of the blocks of the entries' COPY.

Each reference column is now read from the statement's new rows, its distinct values kept, and
only those probed. What is refused is unchanged: a row naming nothing is refused with the same
SQLSTATE (23503) and the same `column -> table` in the message, the whole statement with it. The
probes are still one index lookup each (a scalar subquery, never a join the planner could turn
into a read of the whole referenced table).

Revision ID: 0025
Revises: 0024
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As migration 0008 set them up: table -> [(column, referenced table, nullable)].
REFERENCES = {
    "transactions": [
        ("organization_id", "organizations", False),
        ("created_by", "users", True),
        ("source_wallet_id", "wallets", False),
        ("destination_wallet_id", "wallets", False),
    ],
    "ledger_entries": [("wallet_id", "wallets", False), ("transaction_id", "transactions", False)],
    "audit_logs": [("organization_id", "organizations", True), ("actor_id", "users", True)],
    "idempotency_keys": [("organization_id", "organizations", False)],
}


def _missing_values(column: str, referenced: str, nullable: bool) -> str:
    """One row for each distinct value of `column` that names no row of `referenced`."""
    probe = f"(SELECT true FROM {referenced} WHERE id = n.value) IS NULL"
    condition = f"n.value IS NOT NULL AND {probe}" if nullable else probe
    return (
        f"SELECT '{column} -> {referenced}' AS reference"
        f" FROM (SELECT DISTINCT {column} AS value FROM new_rows) AS n WHERE {condition}"
    )


def _check_function(table: str) -> str:
    missing = [_missing_values(column, referenced, nullable) for column, referenced, nullable in REFERENCES[table]]
    branches = "\n                UNION ALL ".join(missing)
    return _trigger_function(
        table,
        f"""SELECT reference INTO missing FROM (
                {branches}
            ) AS found
            LIMIT 1;""",
    )


def _row_by_row_function(table: str) -> str:
    """Migration 0008's function, for the downgrade."""
    references = REFERENCES[table]

    def missing(column: str, referenced: str, nullable: bool) -> str:
        probe = f"(SELECT true FROM {referenced} WHERE id = n.{column}) IS NULL"
        return f"(n.{column} IS NOT NULL AND {probe})" if nullable else probe

    first_missing = "\n".join(f"WHEN {missing(c, r, nullable)} THEN '{c} -> {r}'" for c, r, nullable in references)
    any_missing = "\n OR ".join(missing(c, r, nullable) for c, r, nullable in references)
    return _trigger_function(
        table,
        f"""SELECT CASE
{first_missing}
                   END
              INTO missing
              FROM new_rows AS n
             WHERE {any_missing}
             LIMIT 1;""",
    )


def _trigger_function(table: str, find_missing: str) -> str:
    """The statement trigger's function: `find_missing` sets `missing` to the first reference that
    names no row (or leaves it NULL); the statement is refused as a foreign key would refuse it."""
    return f"""
        CREATE OR REPLACE FUNCTION {table}_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            missing text;
        BEGIN
            {find_missing}
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'insert on table "%" names a row that does not exist (%)', TG_TABLE_NAME, missing
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END;
        $$;
    """


def upgrade() -> None:
    for table in REFERENCES:
        op.execute(_check_function(table))


def downgrade() -> None:
    for table in REFERENCES:
        op.execute(_row_by_row_function(table))
