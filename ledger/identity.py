"""Organisations and users: signup, login checks, adding users, passwords, deactivation, operators."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger import sessions
from ledger.access import Actor, require_org_admin
from ledger.errors import Conflict, Forbidden, NotFound, Unauthenticated
from ledger.passwords import burn_verification_time, check_strength, context_words, hash_password, verify_password
from ledger.sessions import Revocation
from models import Organization, PlatformRole, Role, User
from models.ids import new_id

PLATFORM_ORGANIZATION_NAME = "VaultCraft platform operators"


def _insert_user(
    session: Session,
    *,
    organization_id: uuid.UUID,
    email: str,
    password: str,
    full_name: str,
    role: Role,
    platform_role: PlatformRole | None = None,
) -> User:
    # ON CONFLICT keeps a racing duplicate signup from becoming a 500.
    user_id = session.execute(
        insert(User)
        .values(
            id=new_id(),
            organization_id=organization_id,
            email=email.strip(),
            password_hash=hash_password(password),
            full_name=full_name,
            role=role,
            platform_role=platform_role,
        )
        .on_conflict_do_nothing()
        .returning(User.id)
    ).scalar_one_or_none()
    if user_id is None:
        raise Conflict("a user with this email already exists", code="EMAIL_TAKEN")
    return session.get_one(User, user_id)


def find_user_by_email(session: Session, email: str, *, for_share: bool = False) -> User | None:
    query = select(User).where(func.lower(User.email) == email.strip().lower())
    if for_share:
        query = query.with_for_update(read=True)
    return session.scalars(query).one_or_none()


def signup(
    session: Session, *, email: str, password: str, full_name: str, organization_name: str
) -> tuple[User, Organization]:
    """Create an organisation with its first user as OWNER."""
    check_strength(password, context=context_words(email, full_name, organization_name))
    organization = Organization(name=organization_name)
    session.add(organization)
    session.flush()
    owner = _insert_user(
        session,
        organization_id=organization.id,
        email=email,
        password=password,
        full_name=full_name,
        role=Role.OWNER,
    )
    return owner, organization


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The user with these credentials. Their row stays share-locked until the caller commits, so a
    deactivation or password change that runs meanwhile waits, then revokes the login started here."""
    user = find_user_by_email(session, email, for_share=True)
    if user is None:
        burn_verification_time(password)
        raise Unauthenticated("wrong email or password", code="INVALID_CREDENTIALS")
    if not verify_password(password, user.password_hash):
        raise Unauthenticated("wrong email or password", code="INVALID_CREDENTIALS")
    if not user.active:
        raise Unauthenticated("this user has been deactivated", code="USER_DEACTIVATED")
    return user


def add_user(session: Session, actor: Actor, *, email: str, password: str, full_name: str, role: Role) -> User:
    """OWNER/ADMIN add a user to their own organisation. Nobody creates a second OWNER this way."""
    require_org_admin(actor)
    organization_name = session.get_one(Organization, actor.organization_id).name
    check_strength(password, context=context_words(email, full_name, organization_name))
    return _insert_user(
        session,
        organization_id=actor.organization_id,
        email=email,
        password=password,
        full_name=full_name,
        role=role,
    )


def user_gone() -> Unauthenticated:
    """A token that verifies but names a user who no longer exists."""
    return Unauthenticated("the user behind this token no longer exists", code="INVALID_TOKEN")


def load_actor(session: Session, user_id: uuid.UUID) -> Actor:
    # Three columns, not the User object: this runs on every authenticated request.
    user = session.execute(
        select(User.organization_id, User.role, User.platform_role, User.active).where(User.id == user_id)
    ).one_or_none()
    if user is None:
        raise user_gone()
    if not user.active:  # their tokens are revoked too; this covers a check that raced the revocation
        raise Unauthenticated("this user has been deactivated", code="USER_DEACTIVATED")
    return Actor(
        user_id=user_id,
        organization_id=user.organization_id,
        role=Role(user.role),
        is_operator=user.platform_role == PlatformRole.OPERATOR,
    )


def get_user_in_org(session: Session, actor: Actor, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    user = session.get(User, user_id, with_for_update=for_update)
    if user is None or user.organization_id != actor.organization_id:
        raise NotFound("user not found", code="USER_NOT_FOUND", target=("user", user_id) if user else None)
    return user


def change_password(
    session: Session, actor: Actor, *, current_password: str, new_password: str, keep_family: uuid.UUID | None
) -> list[Revocation]:
    """Set a new password and end every other login of the user (all but `keep_family`)."""
    user = session.get_one(User, actor.user_id, with_for_update=True)
    if not verify_password(current_password, user.password_hash):
        raise Forbidden("the current password is wrong", code="WRONG_PASSWORD")
    organization_name = session.get_one(Organization, user.organization_id).name
    check_strength(new_password, context=context_words(user.email, user.full_name, organization_name))
    user.password_hash = hash_password(new_password)
    return sessions.revoke_families(session, user.id, keep=keep_family)


@dataclass(frozen=True)
class ActiveChange:
    user: User
    was_active: bool
    revocations: list[Revocation]  # for the revocation cache, once the change commits

    @property
    def changed(self) -> bool:
        return self.was_active != self.user.active


def set_active(session: Session, actor: Actor, user_id: uuid.UUID, *, active: bool) -> ActiveChange:
    """OWNER/ADMIN (de)activate a user of their organisation. Deactivating revokes every login of the
    user. Nobody changes themselves, and only the OWNER could change the OWNER (who is themselves)."""
    require_org_admin(actor)
    user = get_user_in_org(session, actor, user_id, for_update=True)
    if user.id == actor.user_id:
        raise Forbidden("you cannot deactivate yourself", code="CANNOT_DEACTIVATE_SELF")
    if user.role == Role.OWNER:
        raise Forbidden("the organisation's OWNER cannot be deactivated", code="CANNOT_DEACTIVATE_OWNER")
    was_active, user.active = user.active, active
    return ActiveChange(user, was_active, [] if active else sessions.revoke_families(session, user.id))


def create_operator(session: Session, *, email: str, password: str, full_name: str) -> User:
    """A platform operator: may run settlement and reconciliation for every organisation. Their password
    meets the same strength rules as any other user's (WeakPassword)."""
    check_strength(password, context=context_words(email, full_name, PLATFORM_ORGANIZATION_NAME))
    organization_id = session.scalars(
        select(Organization.id).where(Organization.name == PLATFORM_ORGANIZATION_NAME).limit(1)
    ).first()
    if organization_id is None:
        organization = Organization(name=PLATFORM_ORGANIZATION_NAME)
        session.add(organization)
        session.flush()
        organization_id = organization.id
    return _insert_user(
        session,
        organization_id=organization_id,
        email=email,
        password=password,
        full_name=full_name,
        role=Role.OWNER,
        platform_role=PlatformRole.OPERATOR,
    )
