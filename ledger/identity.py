"""Organisations and users: signup, login checks, adding users, operator accounts."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.access import Actor, require_org_admin
from ledger.errors import Conflict, NotFound, Unauthenticated
from ledger.passwords import burn_verification_time, hash_password, verify_password
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


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).one_or_none()


def signup(
    session: Session, *, email: str, password: str, full_name: str, organization_name: str
) -> tuple[User, Organization]:
    """Create an organisation with its first user as OWNER."""
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
    user = find_user_by_email(session, email)
    if user is None:
        burn_verification_time(password)
        raise Unauthenticated("wrong email or password", code="INVALID_CREDENTIALS")
    if not verify_password(password, user.password_hash):
        raise Unauthenticated("wrong email or password", code="INVALID_CREDENTIALS")
    return user


def add_user(session: Session, actor: Actor, *, email: str, password: str, full_name: str, role: Role) -> User:
    """OWNER/ADMIN add a user to their own organisation. Nobody creates a second OWNER this way."""
    require_org_admin(actor)
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
        select(User.organization_id, User.role, User.platform_role).where(User.id == user_id)
    ).one_or_none()
    if user is None:
        raise user_gone()
    return Actor(
        user_id=user_id,
        organization_id=user.organization_id,
        role=Role(user.role),
        is_operator=user.platform_role == PlatformRole.OPERATOR,
    )


def get_user_in_org(session: Session, actor: Actor, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != actor.organization_id:
        raise NotFound("user not found", code="USER_NOT_FOUND")
    return user


def create_operator(session: Session, *, email: str, password: str, full_name: str) -> User:
    """A platform operator: may run settlement and reconciliation for every organisation."""
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
