"""Failed logins listed for operators, newest first, without scanning the whole audit trail.

A partial index of the `auth.login_failed` rows by (occurred_at, id), the order
`GET /audit-logs/failed-logins` pages through. Rows already written stay as they were: the trail is
append-only.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_audit_logs_failed_logins",
        "audit_logs",
        ["occurred_at", "id"],
        unique=False,
        postgresql_where=sa.text("action = 'auth.login_failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_logs_failed_logins", table_name="audit_logs")
