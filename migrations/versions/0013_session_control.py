"""Sessions that can be ended, and P2P requests to an email nobody has.

token_families: one row per login, naming the refresh token that may be presented next, so a
spent one is recognised (reuse detection) and every login of a user can be revoked. users.active:
a deactivated user cannot log in. p2p_requests: the payer is optional and the email asked is kept.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_families",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("refresh_jti", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_token_families_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_families")),
    )
    op.create_index("ix_token_families_user_id", "token_families", ["user_id"], unique=False)
    op.add_column("users", sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column("p2p_requests", sa.Column("payer_email", sa.String(length=254), nullable=True))
    op.alter_column("p2p_requests", "payer_id", existing_type=postgresql.UUID(as_uuid=True), nullable=True)
    op.alter_column("p2p_requests", "payer_organization_id", existing_type=postgresql.UUID(as_uuid=True), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM p2p_requests WHERE payer_id IS NULL")
    op.alter_column(
        "p2p_requests", "payer_organization_id", existing_type=postgresql.UUID(as_uuid=True), nullable=False
    )
    op.alter_column("p2p_requests", "payer_id", existing_type=postgresql.UUID(as_uuid=True), nullable=False)
    op.drop_column("p2p_requests", "payer_email")
    op.drop_column("users", "active")
    op.drop_index("ix_token_families_user_id", table_name="token_families")
    op.drop_table("token_families")
