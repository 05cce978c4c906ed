"""The audit trail: who did what, to what, from where. Append-only: the database refuses UPDATE and DELETE."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, uuid_pk

AUDIT_ACTION_LENGTH_MAX = 64
SOURCE_ADDRESS_LENGTH_MAX = 64
REQUEST_ID_LENGTH_MAX = 64


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        # The API lists an organisation's rows newest first, filtered by action, actor or target.
        Index("ix_audit_logs_org_occurred", "organization_id", "occurred_at", "id"),
        Index("ix_audit_logs_target", "target_id"),
        # Operators list failed logins, every organisation's and none's, newest first.
        Index(
            "ix_audit_logs_failed_logins",
            "occurred_at",
            "id",
            postgresql_where=text("action = 'auth.login_failed'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # clock_timestamp(): the instant the row was written, not the start of its transaction.
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp(), nullable=False)
    # NULL only for platform-wide actions (beat-run reconciliation, an unknown email's failed login).
    # Both references are checked once per statement by a trigger, not by a foreign key (migration 0008).
    organization_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    # Who, in words: the account's email for a failed login on an account (an email nobody has is
    # kept only as a keyed hash, in `after`), "system:beat" for scheduled jobs.
    actor_label: Mapped[str | None] = mapped_column(String(254), nullable=True)
    action: Mapped[str] = mapped_column(String(AUDIT_ACTION_LENGTH_MAX))
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    source_address: Mapped[str | None] = mapped_column(String(SOURCE_ADDRESS_LENGTH_MAX), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH_MAX), nullable=True)
