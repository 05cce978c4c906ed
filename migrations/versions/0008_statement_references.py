"""References checked once per statement on the tables the ledger writes most.

A foreign key checks every new row on its own: a query the executor starts and stops for each row,
an index lookup and a row lock. A bulk intake of 1,000 transfers paid for 7,000 of them (each
intent names its organisation, its creator and two wallets; its audit row an organisation and an
actor; its idempotency key an organisation), a settlement batch of 1,000 intents for 4,000 more (an
entry names its wallet and its transaction): 29% of Postgres's CPU for the two together (perf).

Here those references are checked by one AFTER ... FOR EACH STATEMENT trigger per table instead,
over the statement's new rows (a transition table): one query per statement, one index probe per
reference per row, nothing locked. Set up for insertion, it rejects what the foreign key rejected,
with the same SQLSTATE (23503, foreign_key_violation).

What a foreign key guarantees afterwards, that the row it names stays there with the same id, holds
because nothing that is referenced ever goes away or changes its id: organisations, users, wallets
and transactions refuse DELETE, TRUNCATE and an UPDATE of `id` (a closed wallet is CLOSED, a
settled intent final). And the references themselves never change: ledger entries and audit rows
refuse every UPDATE already, and a transaction's organisation, creator and wallets, or a key's
organisation, cannot be updated.

The one difference from a foreign key: a row that another transaction has inserted and not yet
committed is not seen, so the check refuses instead of waiting for it. Nothing references a row
before the transaction that wrote it commits, except in that same transaction, which sees it.

Left as foreign keys: references that are NULL on nearly every row (a NULL costs a foreign key no
lookup) and idempotency_keys.transaction_id, checked at commit because the key is claimed before
the intent it names is written.

Revision ID: 0008
Revises: 0007
Depends on: 0003 (audit_logs)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0003",)

# table: [(column, referenced table, nullable)]; each replaces the foreign key named by convention.
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
# Referencing columns that no statement may change (ledger_entries and audit_logs refuse any UPDATE).
FIXED_REFERENCES = {
    "transactions": ("organization_id", "created_by", "source_wallet_id", "destination_wallet_id"),
    "idempotency_keys": ("organization_id",),
}
REFERENCED = ("organizations", "users", "wallets", "transactions")


def _foreign_key(table: str, column: str, referenced: str) -> str:
    return f"fk_{table}_{column}_{referenced}"


def _missing(column: str, referenced: str, nullable: bool) -> str:
    """True for a row whose reference names no row. A scalar subquery, not NOT EXISTS: the planner
    never turns it into a join that reads the whole referenced table, whatever the statement's size."""
    probe = f"(SELECT true FROM {referenced} WHERE id = n.{column}) IS NULL"
    return f"(n.{column} IS NOT NULL AND {probe})" if nullable else probe


def _check_function(table: str) -> str:
    references = REFERENCES[table]
    first_missing = "\n".join(
        f"                WHEN {_missing(c, r, nullable)} THEN '{c} -> {r}'" for c, r, nullable in references
    )
    any_missing = "\n                OR ".join(_missing(c, r, nullable) for c, r, nullable in references)
    return f"""
        CREATE FUNCTION {table}_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            missing text;
        BEGIN
            SELECT CASE
{first_missing}
                   END
              INTO missing
              FROM new_rows AS n
             WHERE {any_missing}
             LIMIT 1;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'insert on table "%" names a row that does not exist (%)', TG_TABLE_NAME, missing
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER {table}_check_references
            AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_check_references();
    """


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION refuse_reference_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on table "%" refused: its rows are referenced, and references never change',
                TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END;
        $$;
        """
    )
    for table in REFERENCED:
        op.execute(
            f"""
            CREATE TRIGGER {table}_kept BEFORE DELETE OR TRUNCATE OR UPDATE OF id ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_reference_change();
            """
        )
    for table, columns in FIXED_REFERENCES.items():
        op.execute(
            f"""
            CREATE TRIGGER {table}_references_fixed BEFORE UPDATE OF {", ".join(columns)} ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_reference_change();
            """
        )
    for table, references in REFERENCES.items():
        for column, referenced, _ in references:
            op.drop_constraint(_foreign_key(table, column, referenced), table, type_="foreignkey")
        op.execute(_check_function(table))


def downgrade() -> None:
    for table, references in REFERENCES.items():
        op.execute(f"DROP TRIGGER {table}_check_references ON {table}")
        op.execute(f"DROP FUNCTION {table}_check_references()")
        for column, referenced, _ in references:
            op.create_foreign_key(_foreign_key(table, column, referenced), table, referenced, [column], ["id"])
    for table in FIXED_REFERENCES:
        op.execute(f"DROP TRIGGER {table}_references_fixed ON {table}")
    for table in REFERENCED:
        op.execute(f"DROP TRIGGER {table}_kept ON {table}")
    op.execute("DROP FUNCTION refuse_reference_change()")
