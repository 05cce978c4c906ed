"""Organisations (tenants) and their users."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk


class Role(enum.StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


class PlatformRole(enum.StrEnum):
    OPERATOR = "OPERATOR"


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at_column()


class User(Base):
    __tablename__ = "users"
    # Emails are unique across the platform, whatever their case.
    __table_args__ = (Index("uq_users_email_lower", text("lower(email)"), unique=True),)

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(100))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(Enum(Role, name="user_role", native_enum=False, length=16))
    platform_role: Mapped[PlatformRole | None] = mapped_column(
        Enum(PlatformRole, name="platform_role", native_enum=False, length=16), nullable=True
    )
    # An OWNER/ADMIN may deactivate a user: their tokens are revoked and they cannot log in.
    active: Mapped[bool] = mapped_column(server_default=true(), default=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
