"""Logins as token families: started at login, rotated on refresh, revoked one by one or all at once.

Every token a login leads to carries its family's id. Revoking a family writes a `fam:<id>` row to
revoked_tokens, the durable record the revocation cache copies, so a check of a token asks about its
family in the same lookup as its own id. The family row itself names the one refresh token that may
be presented next: presenting an older one is a reuse (a stolen token, or its thief's), and ends
the family (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models import RevokedToken, TokenFamily

FAMILY_KEY_PREFIX = "fam:"


def family_key(family_id: uuid.UUID | str) -> str:
    """The family's entry among revoked token ids."""
    return f"{FAMILY_KEY_PREFIX}{family_id}"


@dataclass(frozen=True)
class Revocation:
    """A revoked id (a token's jti or a family's key) and how long it must be remembered."""

    key: str
    expires_at: datetime


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # a spent refresh token: the family is now revoked
    ENDED = "ended"  # the family was revoked, expired or is unknown


@dataclass(frozen=True)
class Refreshed:
    outcome: RefreshOutcome
    revocations: list[Revocation] = field(default_factory=list)


def start_family(session: Session, user_id: uuid.UUID, *, refresh_jti: str, expires_at: datetime) -> uuid.UUID:
    family = TokenFamily(user_id=user_id, refresh_jti=refresh_jti, expires_at=expires_at)
    session.add(family)
    session.flush()
    return family.id


def rotate(
    session: Session,
    *,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    presented_jti: str,
    next_jti: str,
    expires_at: datetime,
) -> Refreshed:
    """Spend the presented refresh token for `next_jti`, or revoke the family if it was spent already.

    The family row is locked, so of two refreshes racing with one token exactly one rotates; the
    other is a reuse, as the BCP asks.
    """
    family = session.scalars(
        select(TokenFamily).where(TokenFamily.id == family_id, TokenFamily.user_id == user_id).with_for_update()
    ).one_or_none()
    if family is None or family.revoked_at is not None or family.expires_at <= _now(session):
        return Refreshed(RefreshOutcome.ENDED)
    if family.refresh_jti != presented_jti:
        return Refreshed(RefreshOutcome.REUSED, revoke_families(session, user_id, only=family_id))
    family.refresh_jti = next_jti
    family.expires_at = expires_at
    return Refreshed(RefreshOutcome.ROTATED)


def revoke_families(
    session: Session, user_id: uuid.UUID, *, only: uuid.UUID | None = None, keep: uuid.UUID | None = None
) -> list[Revocation]:
    """Revoke the user's live families (only one of them, or all but one), durably, in the caller's
    transaction. Returns what the revocation cache must learn once it commits."""
    statement = (
        update(TokenFamily)
        .where(
            TokenFamily.user_id == user_id,
            TokenFamily.revoked_at.is_(None),
            TokenFamily.expires_at > func.now(),
        )
        .values(revoked_at=func.now())
        .returning(TokenFamily.id, TokenFamily.expires_at)
    )
    if only is not None:
        statement = statement.where(TokenFamily.id == only)
    if keep is not None:
        statement = statement.where(TokenFamily.id != keep)
    revocations = [Revocation(family_key(row.id), row.expires_at) for row in session.execute(statement)]
    record_revocations(session, revocations)
    return revocations


def record_revocations(session: Session, revocations: list[Revocation]) -> None:
    if revocations:
        session.execute(
            insert(RevokedToken)
            .values([{"jti": r.key, "expires_at": r.expires_at} for r in revocations])
            .on_conflict_do_nothing(index_elements=["jti"])
        )


def _now(session: Session) -> datetime:
    return session.execute(select(func.now())).scalar_one()
