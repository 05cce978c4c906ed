"""Core schema: organisations, users, wallets, members, transactions, idempotency keys, ledger.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=100), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column(
            "role", sa.Enum("OWNER", "ADMIN", "MEMBER", name="user_role", native_enum=False, length=16), nullable=False
        ),
        sa.Column(
            "platform_role", sa.Enum("OPERATOR", name="platform_role", native_enum=False, length=16), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_users_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_organization_id"), "users", ["organization_id"], unique=False)
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "wallets",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column(
            "type",
            sa.Enum("PRIMARY", "BONUS", "SYSTEM", name="wallet_type", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum("ACTIVE", "LOCKED", "CLOSED", name="wallet_status", native_enum=False, length=16),
            server_default="ACTIVE",
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("balance >= 0 OR type = 'SYSTEM'", name=op.f("ck_wallets_balance_non_negative")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_wallets_currency_iso4217")),
        sa.CheckConstraint("status <> 'CLOSED' OR balance = 0", name=op.f("ck_wallets_closed_at_zero")),
        sa.CheckConstraint("version >= 0", name=op.f("ck_wallets_version_non_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_wallets_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_wallets_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
    )
    op.create_index(op.f("ix_wallets_organization_id"), "wallets", ["organization_id"], unique=False)
    op.create_index("ix_wallets_owner_id", "wallets", ["owner_id"], unique=False)
    op.create_index(
        "uq_wallets_system_name",
        "wallets",
        ["organization_id", "currency", "name"],
        unique=True,
        postgresql_where=sa.text("type = 'SYSTEM'"),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "type",
            sa.Enum(
                "TRANSFER", "DEPOSIT", "WITHDRAWAL", "SETTLEMENT", name="transaction_type", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING", "COMPLETED", "FAILED", "CANCELLED", name="transaction_status", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("source_wallet_id", sa.UUID(), nullable=False),
        sa.Column("destination_wallet_id", sa.UUID(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'FAILED') = (failure_reason IS NOT NULL)",
            name=op.f("ck_transactions_failure_reason_when_failed"),
        ),
        sa.CheckConstraint(
            "(status = 'PENDING') = (completed_at IS NULL)", name=op.f("ck_transactions_completed_at_when_final")
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_transactions_currency_iso4217")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transactions_amount_positive")),
        sa.CheckConstraint("source_wallet_id <> destination_wallet_id", name=op.f("ck_transactions_distinct_wallets")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_transactions_created_by_users")),
        sa.ForeignKeyConstraint(
            ["destination_wallet_id"], ["wallets.id"], name=op.f("fk_transactions_destination_wallet_id_wallets")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_transactions_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["source_wallet_id"], ["wallets.id"], name=op.f("fk_transactions_source_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
    )
    op.create_index(
        "ix_transactions_destination_created", "transactions", ["destination_wallet_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_transactions_org_created", "transactions", ["organization_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_transactions_pending",
        "transactions",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.create_index("ix_transactions_source_created", "transactions", ["source_wallet_id", "created_at"], unique=False)
    op.create_table(
        "wallet_members",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("wallet_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "role", sa.Enum("CONTRIBUTOR", "VIEWER", name="member_role", native_enum=False, length=16), nullable=False
        ),
        sa.Column("granted_by", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["granted_by"], ["users.id"], name=op.f("fk_wallet_members_granted_by_users")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wallet_members_user_id_users")),
        sa.ForeignKeyConstraint(["wallet_id"], ["wallets.id"], name=op.f("fk_wallet_members_wallet_id_wallets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_members")),
        sa.UniqueConstraint("wallet_id", "user_id", name="uq_wallet_members_wallet_user"),
    )
    op.create_index(op.f("ix_wallet_members_user_id"), "wallet_members", ["user_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_idempotency_keys_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_idempotency_keys_transaction_id_transactions"),
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.PrimaryKeyConstraint("organization_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("wallet_id", sa.UUID(), nullable=False),
        sa.Column("transaction_id", sa.UUID(), nullable=False),
        sa.Column(
            "direction", sa.Enum("DEBIT", "CREDIT", name="direction", native_enum=False, length=8), nullable=False
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("wallet_version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.CheckConstraint("wallet_version > 0", name=op.f("ck_ledger_entries_wallet_version_positive")),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["transactions.id"], name=op.f("fk_ledger_entries_transaction_id_transactions")
        ),
        sa.ForeignKeyConstraint(["wallet_id"], ["wallets.id"], name=op.f("fk_ledger_entries_wallet_id_wallets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("wallet_id", "wallet_version", name="uq_ledger_entries_wallet_version"),
    )
    op.create_index("ix_ledger_entries_transaction_id", "ledger_entries", ["transaction_id"], unique=False)
    _add_enum_checks()
    _make_ledger_append_only()


# The enums are stored as text; the database still refuses a value outside each set.
ENUM_CHECKS = {
    ("users", "role"): ("OWNER", "ADMIN", "MEMBER"),
    ("users", "platform_role"): ("OPERATOR",),
    ("wallets", "type"): ("PRIMARY", "BONUS", "SYSTEM"),
    ("wallets", "status"): ("ACTIVE", "LOCKED", "CLOSED"),
    ("wallet_members", "role"): ("CONTRIBUTOR", "VIEWER"),
    ("transactions", "type"): ("TRANSFER", "DEPOSIT", "WITHDRAWAL", "SETTLEMENT"),
    ("transactions", "status"): ("PENDING", "COMPLETED", "FAILED", "CANCELLED"),
    ("ledger_entries", "direction"): ("DEBIT", "CREDIT"),
}


def _add_enum_checks() -> None:
    for (table, column), values in ENUM_CHECKS.items():
        allowed = ", ".join(f"'{value}'" for value in values)
        op.create_check_constraint(f"{column}_allowed", table, f"{column} IN ({allowed})")


def _make_ledger_append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$;
        CREATE TRIGGER ledger_entries_no_update_delete
            BEFORE UPDATE OR DELETE ON ledger_entries
            FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
        CREATE TRIGGER ledger_entries_no_truncate
            BEFORE TRUNCATE ON ledger_entries
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_entries_no_truncate ON ledger_entries")
    op.execute("DROP TRIGGER ledger_entries_no_update_delete ON ledger_entries")
    op.execute("DROP FUNCTION ledger_entries_append_only()")
    op.drop_index("ix_ledger_entries_transaction_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_wallet_members_user_id"), table_name="wallet_members")
    op.drop_table("wallet_members")
    op.drop_index("ix_transactions_source_created", table_name="transactions")
    op.drop_index("ix_transactions_pending", table_name="transactions", postgresql_where=sa.text("status = 'PENDING'"))
    op.drop_index("ix_transactions_org_created", table_name="transactions")
    op.drop_index("ix_transactions_destination_created", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index("uq_wallets_system_name", table_name="wallets", postgresql_where=sa.text("type = 'SYSTEM'"))
    op.drop_index("ix_wallets_owner_id", table_name="wallets")
    op.drop_index(op.f("ix_wallets_organization_id"), table_name="wallets")
    op.drop_table("wallets")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_index(op.f("ix_users_organization_id"), table_name="users")
    op.drop_table("users")
    op.drop_table("organizations")
