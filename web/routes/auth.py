"""Signup, login, token refresh, logout (one login or all), password change and the caller's profile."""

from __future__ import annotations

import uuid
from typing import Any

from flask_jwt_extended import get_jwt, get_jwt_identity

from ledger import identity, sessions
from ledger.errors import Unauthenticated
from ledger.sessions import RefreshOutcome
from models import User
from web.api import Blueprint
from web.db import unit_of_work
from web.limits import login_limits, password_change_limit, signup_limit
from web.request_context import audit, record_login_failure
from web.schemas.auth import (
    LoginSchema,
    LogoutResultSchema,
    PasswordChangeResultSchema,
    PasswordChangeSchema,
    SignupResultSchema,
    SignupSchema,
    TokenPairSchema,
    UserSchema,
)
from web.security import authenticated, current_actor
from web.serializers import user_view
from web.tokens import cache_revocations, family_of, revoke_token, rotate_refresh_token, start_login

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


@blp.route("/signup", methods=["POST"])
@signup_limit
@blp.arguments(SignupSchema)
@blp.response(201, SignupResultSchema)
def signup(body: dict[str, Any]) -> dict[str, Any]:
    """Create an organisation and its first user, the OWNER."""
    with unit_of_work() as session:
        user, organization = identity.signup(session, **body)
        audit(session, user, "auth.signup", target=organization, after={"email": user.email, "role": user.role})
        return {"user": user_view(user), "organization": organization, **start_login(session, user.id)}


@blp.route("/login", methods=["POST"])
@login_limits[0]
@login_limits[1]
@login_limits[2]
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
def login(body: dict[str, Any]) -> dict[str, str]:
    try:
        with unit_of_work() as session:
            user = identity.authenticate(session, email=body["email"], password=body["password"])
            audit(session, user, "auth.login_succeeded", target=user)
            return start_login(session, user.id)
    except Unauthenticated as refused:
        record_login_failure(body["email"], refused.code)  # in its own transaction: the login's rolled back
        raise


@blp.route("/refresh", methods=["POST"])
@authenticated(blp, refresh=True)
@blp.response(200, TokenPairSchema)
def refresh() -> dict[str, str]:
    """Present the refresh token as Bearer; get a new pair. The token presented is spent: presenting
    it again revokes every token of its login."""
    claims = get_jwt()
    with unit_of_work() as session:
        refreshed, pair = rotate_refresh_token(session, claims)
        if refreshed.outcome is RefreshOutcome.REUSED:
            user_id = uuid.UUID(get_jwt_identity())
            audit(session, current_actor(session), "auth.refresh_token_reused", target=("user", user_id))
    cache_revocations(refreshed.revocations)
    if refreshed.outcome is RefreshOutcome.REUSED:
        raise Unauthenticated("this refresh token was already used; its login is revoked", code="REFRESH_TOKEN_REUSED")
    if refreshed.outcome is RefreshOutcome.ENDED:
        raise Unauthenticated("token has been revoked", code="TOKEN_REVOKED")
    return pair


@blp.route("/logout", methods=["POST"])
@authenticated(blp, verify_type=False)
@blp.response(200, LogoutResultSchema)
def logout() -> dict[str, bool]:
    """Revoke the token presented and every other token of its login."""
    with unit_of_work() as session:
        audit(session, current_actor(session), "auth.logout", target=("user", get_jwt_identity()))
        revocations = revoke_token(session, get_jwt())
    cache_revocations(revocations)
    return {"revoked": True}


@blp.route("/logout-all", methods=["POST"])
@authenticated(blp, verify_type=False)
@blp.response(200, LogoutResultSchema)
def logout_all() -> dict[str, bool]:
    """Revoke every token of the caller, of every login on every device."""
    with unit_of_work() as session:
        actor = current_actor(session)
        audit(session, actor, "auth.logout_all", target=("user", actor.user_id))
        revocations = revoke_token(session, get_jwt()) + sessions.revoke_families(session, actor.user_id)
    cache_revocations(revocations)
    return {"revoked": True}


@blp.route("/password", methods=["POST"])
@password_change_limit
@authenticated(blp)
@blp.arguments(PasswordChangeSchema)
@blp.response(200, PasswordChangeResultSchema)
def change_password(body: dict[str, Any]) -> dict[str, bool]:
    """Change the caller's password; every other login of the caller ends, this one goes on."""
    with unit_of_work() as session:
        actor = current_actor(session)
        revocations = identity.change_password(
            session,
            actor,
            current_password=body["current_password"],
            new_password=body["new_password"],
            keep_family=family_of(get_jwt()),
        )
        audit(
            session,
            actor,
            "auth.password_changed",
            target=("user", actor.user_id),
            after={"sessions_ended": len(revocations)},
        )
    cache_revocations(revocations)
    return {"changed": True}


@blp.route("/me", methods=["GET"])
@authenticated(blp)
@blp.response(200, UserSchema)
def me() -> dict[str, Any]:
    with unit_of_work() as session:
        actor = current_actor(session)
        return user_view(session.get_one(User, actor.user_id))
