"""Webhooks: an organisation's endpoints, and one delivery row per endpoint per event.

The delivery row is the truth about a delivery: its state, when it is next due, and who holds it now
(`lease_until`). Messages on the broker only say "look at this row"; a lost one is swept up again.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk

WEBHOOK_URL_LENGTH_MAX = 2048
WEBHOOK_DESCRIPTION_LENGTH_MAX = 500
WEBHOOK_EVENT_TYPE_LENGTH_MAX = 64
WEBHOOK_EVENT_TYPES_MAX = 50
WEBHOOK_ERROR_LENGTH_MAX = 500


class EndpointStatus(enum.StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_LENGTH_MAX))
    description: Mapped[str | None] = mapped_column(String(WEBHOOK_DESCRIPTION_LENGTH_MAX), nullable=True)
    # "*", "<aggregate>.*" or an exact type (notify/endpoints.py matches them, in SQL too).
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(WEBHOOK_EVENT_TYPE_LENGTH_MAX)))
    status: Mapped[EndpointStatus] = mapped_column(
        Enum(EndpointStatus, name="webhook_endpoint_status", native_enum=False, length=16)
    )
    # Fernet tokens of the signing secrets (notify/secrets.py); the old one signs too until it expires.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Since when every attempt has failed (NULL after any success): DISABLED once it is old enough.
    failing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The relay may run a batch twice (at least once): one delivery per endpoint per event still.
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        Index("ix_webhook_deliveries_endpoint_newest", "endpoint_id", "created_at", "id"),
        # The work list, as small as what is waiting, not the history: one endpoint's due deliveries,
        # oldest due first, for a delivery batch's claim (not the other endpoints' backlogs on the
        # way); the sweeper's per-endpoint ranking and the pending count read it too.
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=sql_text("status = 'PENDING'"),
        ),
        # Whether a drain is at work on an endpoint (a live lease) is read through this one.
        Index("ix_webhook_deliveries_leased", "endpoint_id", postgresql_where=sql_text("lease_until IS NOT NULL")),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(WEBHOOK_EVENT_TYPE_LENGTH_MAX))
    event_created_at: Mapped[datetime]
    # Exactly the bytes sent (and signed): the event as the broker carries it.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="webhook_delivery_status", native_enum=False, length=16)
    )
    # Attempts made so far; the fields below describe the last one.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(WEBHOOK_ERROR_LENGTH_MAX), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Retries stop (FAILED) once an attempt fails after this instant.
    give_up_at: Mapped[datetime]
    # An attempt in flight holds the row until then; a worker killed mid-attempt lets it lapse.
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at_column()
