"""Settlement batches record the organisations they had to leave out.

A batch that finds an organisation's treasury or clearing wallet LOCKED or CLOSED settles everyone
else and leaves that organisation's obligations for a later batch (ledger/clearing/batches.py);
`skipped` says which organisations, in which currency, and why, so it shows in the batch.

Revision ID: 0010
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "settlement_batches",
        sa.Column("skipped", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("settlement_batches", "skipped")
