"""Integrity: reconciliation runs and findings, the append-only audit log, the event outbox.

Also transactions.request_id (the API request that accepted an intent) and an index on
transactions.completed_at for incremental reconciliation.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("wallet_ids", postgresql.ARRAY(sa.UUID()), server_default="{}", nullable=False),
        sa.Column("organization_ids", postgresql.ARRAY(sa.UUID()), server_default="{}", nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index(
        "ix_outbox_events_unpublished",
        "outbox_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "reconciliation_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("completed_through", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconciliation_cursors")),
    )
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "occurred_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("actor_label", sa.String(length=254), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_audit_logs_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_audit_logs_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
    )
    op.create_index("ix_audit_logs_org_occurred", "audit_logs", ["organization_id", "occurred_at", "id"], unique=False)
    op.create_index("ix_audit_logs_target", "audit_logs", ["target_id"], unique=False)
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("INCREMENTAL", "FULL", name="reconciliation_mode", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("CLEAN", "DRIFT", name="reconciliation_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("triggered_by", sa.UUID(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("wallets_checked", sa.BigInteger(), nullable=False),
        sa.Column("entries_checked", sa.BigInteger(), nullable=False),
        sa.Column("transactions_checked", sa.BigInteger(), nullable=False),
        sa.Column("findings_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_reconciliation_runs_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["triggered_by"], ["users.id"], name=op.f("fk_reconciliation_runs_triggered_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index("ix_reconciliation_runs_started", "reconciliation_runs", ["started_at", "id"], unique=False)
    op.create_table(
        "reconciliation_findings",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column(
            "check_name",
            sa.Enum(
                "BALANCE_MISMATCH",
                "VERSION_MISMATCH",
                "BALANCE_CHAIN_BROKEN",
                "VERSION_GAP",
                "TRANSACTION_UNBALANCED",
                "ENTRIES_ON_UNPOSTED_TRANSACTION",
                "CURRENCY_NOT_ZERO",
                name="reconciliation_check",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("wallet_id", sa.UUID(), nullable=True),
        sa.Column("transaction_id", sa.UUID(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expected", sa.BigInteger(), nullable=True),
        sa.Column("actual", sa.BigInteger(), nullable=True),
        sa.Column("difference", sa.BigInteger(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["reconciliation_runs.id"], name=op.f("fk_reconciliation_findings_run_id_reconciliation_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_findings")),
    )
    op.create_index("ix_reconciliation_findings_run", "reconciliation_findings", ["run_id"], unique=False)
    op.create_table(
        "reconciliation_marks",
        sa.Column("wallet_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column(
            "checked_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_reconciliation_marks")),
    )
    op.add_column("transactions", sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_index("ix_transactions_completed_at", "transactions", ["completed_at"], unique=False)
    _add_enum_checks()
    _make_audit_log_append_only()


# Stored as text like every enum in this schema; the database still refuses a value outside each set.
ENUM_CHECKS = {
    ("reconciliation_runs", "mode"): ("INCREMENTAL", "FULL"),
    ("reconciliation_runs", "status"): ("CLEAN", "DRIFT"),
    ("reconciliation_findings", "check_name"): (
        "BALANCE_MISMATCH",
        "VERSION_MISMATCH",
        "BALANCE_CHAIN_BROKEN",
        "VERSION_GAP",
        "TRANSACTION_UNBALANCED",
        "ENTRIES_ON_UNPOSTED_TRANSACTION",
        "CURRENCY_NOT_ZERO",
    ),
}


def _add_enum_checks() -> None:
    for (table, column), values in ENUM_CHECKS.items():
        allowed = ", ".join(f"'{value}'" for value in values)
        op.create_check_constraint(f"{column}_allowed", table, f"{column} IN ({allowed})")


def _make_audit_log_append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$;
        CREATE TRIGGER audit_logs_no_update_delete
            BEFORE UPDATE OR DELETE ON audit_logs
            FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
        CREATE TRIGGER audit_logs_no_truncate
            BEFORE TRUNCATE ON audit_logs
            FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_logs_no_truncate ON audit_logs")
    op.execute("DROP TRIGGER audit_logs_no_update_delete ON audit_logs")
    op.execute("DROP FUNCTION audit_logs_append_only()")
    op.drop_index("ix_transactions_completed_at", table_name="transactions")
    op.drop_column("transactions", "request_id")
    op.drop_table("reconciliation_marks")
    op.drop_index("ix_reconciliation_findings_run", table_name="reconciliation_findings")
    op.drop_table("reconciliation_findings")
    op.drop_index("ix_reconciliation_runs_started", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_audit_logs_target", table_name="audit_logs")
    op.drop_index("ix_audit_logs_org_occurred", table_name="audit_logs")
    op.drop_table("audit_logs")
    op.drop_table("reconciliation_cursors")
    op.drop_index(
        "ix_outbox_events_unpublished", table_name="outbox_events", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox_events")
