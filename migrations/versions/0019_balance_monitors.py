"""Balance monitors: a threshold on a wallet's available balance, and whether it is crossed now.

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UUID = postgresql.UUID(as_uuid=True)
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "balance_monitors",
        sa.Column("id", _UUID, nullable=False),
        sa.Column("wallet_id", _UUID, nullable=False),
        sa.Column("organization_id", _UUID, nullable=False),
        sa.Column("condition", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("in_condition", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_by", _UUID, nullable=True),
        sa.Column("created_at", _TIME, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("threshold >= 0", name=op.f("ck_balance_monitors_threshold_not_negative")),
        sa.ForeignKeyConstraint(["wallet_id"], ["wallets.id"], name=op.f("fk_balance_monitors_wallet_id_wallets")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_balance_monitors_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_balance_monitors_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_monitors")),
    )
    op.create_index("ix_balance_monitors_wallet_newest", "balance_monitors", ["wallet_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_balance_monitors_wallet_newest", table_name="balance_monitors")
    op.drop_table("balance_monitors")
