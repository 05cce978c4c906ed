"""Events found by what they are about: the console's transaction page lists a transaction's events.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (aggregate_id, id): the lookup is by id and ordered by the outbox's own order, so it reads only
    # that aggregate's rows, already sorted, however large the outbox grows.
    op.create_index("ix_outbox_events_aggregate", "outbox_events", ["aggregate_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_events_aggregate", table_name="outbox_events")
