"""Risk controls: per-organisation limits on outgoing transfers, and the index that counts a wallet's
recent outgoing transfers against them.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_limits",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("transfer_amount_max", sa.BigInteger(), nullable=True),
        sa.Column("daily_outgoing_max_per_wallet", sa.BigInteger(), nullable=True),
        sa.Column("transfers_per_minute_max_per_wallet", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.CheckConstraint("transfer_amount_max > 0", name=op.f("ck_risk_limits_transfer_amount_max_positive")),
        sa.CheckConstraint(
            "daily_outgoing_max_per_wallet > 0", name=op.f("ck_risk_limits_daily_outgoing_max_positive")
        ),
        sa.CheckConstraint(
            "transfers_per_minute_max_per_wallet > 0", name=op.f("ck_risk_limits_transfers_per_minute_max_positive")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_risk_limits_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_risk_limits_updated_by_users")),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_risk_limits")),
    )
    # A wallet's COMPLETED outgoing transfers by completion time, amount included: the risk check
    # reads today's and the last minute's with an index-only range scan instead of the whole history.
    op.create_index(
        "ix_transactions_outgoing_completed",
        "transactions",
        ["source_wallet_id", "completed_at"],
        unique=False,
        postgresql_include=["amount"],
        postgresql_where=sa.text("status = 'COMPLETED' AND type IN ('TRANSFER', 'WITHDRAWAL')"),
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_outgoing_completed", table_name="transactions")
    op.drop_table("risk_limits")
