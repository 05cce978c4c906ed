"""Revoked tokens and token families: the durable record behind the Redis revocation cache."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, uuid_pk


class RevokedToken(Base):
    """A revoked token id (`jti`), or a whole revoked family (`fam:<family id>`)."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    # After this the token would be refused as expired anyway; the row may then be pruned.
    expires_at: Mapped[datetime]


class TokenFamily(Base):
    """One login: every access and refresh token it leads to carries the family's id (`fam`).

    Refresh tokens rotate: only `refresh_jti` may be presented next; an older one of the family is a
    reuse, and ends the family (OAuth 2.0 Security BCP, refresh token rotation).
    """

    __tablename__ = "token_families"
    __table_args__ = (Index("ix_token_families_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    refresh_jti: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    # When the newest refresh token of the family expires: after that the family is over anyway.
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
