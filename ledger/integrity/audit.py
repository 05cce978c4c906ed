"""The audit trail: one append-only row per sensitive action, written in the action's own transaction.

Callers pass who acted (an Actor, a User, or None for the platform itself), the action name
(`noun.verb`, e.g. `wallet.status_changed`), what it was done to, and where the request came from.
Nothing here knows about HTTP: the web layer hands in an `Origin`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from ledger.access import Actor, require_org_admin
from ledger.errors import Forbidden
from ledger.pagination import Page, paginate
from models import AuditLog, User
from models.audit import REQUEST_ID_LENGTH_MAX, SOURCE_ADDRESS_LENGTH_MAX
from models.ids import new_id

ACTOR_LABEL_LENGTH_MAX = 254
LOGIN_FAILED = "auth.login_failed"
ACCESS_DENIED = "access.denied"


class LoginFailure(enum.StrEnum):
    UNKNOWN_EMAIL = "UNKNOWN_EMAIL"
    WRONG_PASSWORD = "WRONG_PASSWORD"
    USER_DEACTIVATED = "USER_DEACTIVATED"


@dataclass(frozen=True)
class Origin:
    """Where an action came from: the client's address and the request id, or a system job's name."""

    source_address: str | None = None
    request_id: str | None = None

    @property
    def source_address_column(self) -> str | None:
        """The address as an audit row stores it: cut to the column's width, an empty one as NULL."""
        return (self.source_address or None) and self.source_address[:SOURCE_ADDRESS_LENGTH_MAX]

    @property
    def request_id_column(self) -> str | None:
        return (self.request_id or None) and self.request_id[:REQUEST_ID_LENGTH_MAX]


SYSTEM_ORIGIN = Origin()


def _target(target: Any) -> tuple[str | None, str | None]:
    """(type, id) of whatever the action was done to: a model instance, or an explicit pair."""
    if target is None:
        return None, None
    if isinstance(target, tuple):
        kind, identifier = target
        return str(kind), str(identifier)
    kind = getattr(target, "__tablename__", type(target).__name__).rstrip("s")
    return kind, str(target.id)


def _plain(value: Any) -> Any:
    """JSON-ready copy of a before/after snapshot: ids, times and enums become strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID | datetime):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    return value


def _who(actor: Actor | User | None) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    if actor is None:
        return None, None
    if isinstance(actor, Actor):
        return actor.user_id, actor.organization_id
    return actor.id, actor.organization_id


def record(
    session: Session,
    actor: Actor | User | None,
    action: str,
    *,
    target: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    organization_id: uuid.UUID | None = None,
    actor_label: str | None = None,
    origin: Origin = SYSTEM_ORIGIN,
) -> None:
    """Append one audit row to the caller's transaction: it commits or rolls back with the action."""
    actor_id, actor_org = _who(actor)
    target_type, target_id = _target(target)
    # A Core INSERT, not an ORM flush: nothing reads the row back, and it runs on every write request.
    session.execute(
        insert(AuditLog).values(
            id=new_id(),
            organization_id=organization_id or actor_org,
            actor_id=actor_id,
            actor_label=actor_label[:ACTOR_LABEL_LENGTH_MAX] if actor_label else None,
            action=action,
            target_type=target_type,
            target_id=target_id,
            before=_plain(before) if before is not None else None,
            after=_plain(after) if after is not None else None,
            source_address=origin.source_address_column,
            request_id=origin.request_id_column,
        )
    )


@dataclass(frozen=True)
class AuditFilters:
    action: str | None = None
    actor_id: uuid.UUID | None = None
    target_id: str | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None


def _filtered(query: Select[tuple[AuditLog]], filters: AuditFilters) -> Select[tuple[AuditLog]]:
    if filters.action is not None:
        # `wallet.` matches every wallet action; a full name matches itself.
        if filters.action.endswith("."):
            query = query.where(AuditLog.action.startswith(filters.action, autoescape=True))
        else:
            query = query.where(AuditLog.action == filters.action)
    if filters.actor_id is not None:
        query = query.where(AuditLog.actor_id == filters.actor_id)
    if filters.target_id is not None:
        query = query.where(AuditLog.target_id == filters.target_id)
    if filters.occurred_after is not None:
        query = query.where(AuditLog.occurred_at >= filters.occurred_after)
    if filters.occurred_before is not None:
        query = query.where(AuditLog.occurred_at < filters.occurred_before)
    return query


def list_audit_logs(
    session: Session, actor: Actor, filters: AuditFilters, *, limit: int, cursor: str | None
) -> Page[AuditLog]:
    """The caller's organisation's rows, newest first. OWNER/ADMIN only; never another organisation's."""
    require_org_admin(actor)
    query = _filtered(select(AuditLog).where(AuditLog.organization_id == actor.organization_id), filters)
    return paginate(
        session,
        query,
        keys=(AuditLog.occurred_at, AuditLog.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


# --- failed logins ---------------------------------------------------------------------------------


def email_digest(email: str, key: bytes) -> str:
    """The keyed hash a failed login stores of the email it named (trimmed, lower-cased): the same
    email gives the same digest, so an operator sees one address tried many times, or many tried once,
    and can check an address they are asked about; without the key nobody can test guesses offline.
    What was typed is never stored for an email nobody has: people type passwords into email fields."""
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def record_login_failure(
    session: Session, user: User | None, *, email: str, reason: LoginFailure, digest_key: bytes, origin: Origin
) -> None:
    """`auth.login_failed`: for an account, in its organisation's trail with its email; for an email
    nobody has, in no organisation's trail (only operators see it) and with only its digest."""
    record(
        session,
        None,
        LOGIN_FAILED,
        target=user,
        organization_id=user.organization_id if user else None,
        actor_label=user.email if user else None,
        after={"reason": reason, "email_hash": email_digest(email, digest_key)},
        origin=origin,
    )


def list_failed_logins(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page[AuditLog]:
    """Every failed login, of every organisation's accounts and of emails nobody has, newest first:
    platform operators only."""
    if not actor.is_operator:
        raise Forbidden("only a platform operator lists failed logins", code="OPERATOR_REQUIRED")
    return paginate(
        session,
        select(AuditLog).where(AuditLog.action == LOGIN_FAILED),
        keys=(AuditLog.occurred_at, AuditLog.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


# --- denials ---------------------------------------------------------------------------------------


def record_denial(
    session: Session, actor: Actor, *, status: int, code: str, attempted: str, target: Any, origin: Origin
) -> None:
    """`access.denied` in the caller's own organisation's trail: a 403, or a 404 for an object that
    exists but is not theirs to see. The object's organisation is told nothing: naming the prober to
    it would tell one tenant of another. Nothing of the object beyond its type and id is kept."""
    record(
        session,
        actor,
        ACCESS_DENIED,
        target=target,
        after={"status": status, "code": code, "attempted": attempted},
        origin=origin,
    )
