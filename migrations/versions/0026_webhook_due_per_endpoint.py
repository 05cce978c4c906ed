"""An endpoint's due webhook deliveries, oldest due first: what a delivery batch claims.

The claim (notify/deliveries.py, _CLAIM) takes up to a batch of one endpoint's PENDING deliveries
whose next attempt is due. Through ix_webhook_deliveries_due (next_attempt_at) it read every
endpoint's due deliveries older than the first of its own: behind a dead endpoint's backlog of 50,000,
each claim of a healthy endpoint read all 50,000 (70 ms). The planner keeps choosing that index while
it exists (it cannot tell that one endpoint's rows are not spread evenly over the others'), so this
one replaces it: the sweeper's per-endpoint ranking and the pending count read it as well.

Revision ID: 0026
Revises: 0025
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_endpoint_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.drop_index("ix_webhook_deliveries_endpoint_due", table_name="webhook_deliveries")
