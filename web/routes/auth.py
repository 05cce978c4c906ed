"""Signup, login, token refresh, logout and the caller's profile."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_jwt_extended import get_jwt, get_jwt_identity

from ledger import identity
from ledger.errors import Unauthenticated
from models import User
from web.api import Blueprint
from web.db import unit_of_work
from web.limits import login_limits
from web.request_context import audit, record_login_failure
from web.schemas.auth import (
    AccessTokenSchema,
    LoginSchema,
    LogoutResultSchema,
    SignupResultSchema,
    SignupSchema,
    TokenPairSchema,
    UserSchema,
)
from web.security import authenticated, current_actor
from web.serializers import user_view
from web.tokens import issue_access_token, issue_token_pair, revoke

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


@blp.route("/signup", methods=["POST"])
@blp.arguments(SignupSchema)
@blp.response(201, SignupResultSchema)
def signup(body: dict[str, Any]) -> dict[str, Any]:
    """Create an organisation and its first user, the OWNER."""
    with unit_of_work() as session:
        user, organization = identity.signup(session, **body)
        audit(session, user, "auth.signup", target=organization, after={"email": user.email, "role": user.role})
        result = {"user": user_view(user), "organization": organization}
    return {**result, **issue_token_pair(user.id)}


@blp.route("/login", methods=["POST"])
@login_limits[0]
@login_limits[1]
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
def login(body: dict[str, Any]) -> dict[str, str]:
    try:
        with unit_of_work() as session:
            user = identity.authenticate(session, email=body["email"], password=body["password"])
            audit(session, user, "auth.login_succeeded", target=user)
    except Unauthenticated:
        record_login_failure(body["email"])  # in its own transaction: the login's rolled back
        raise
    return issue_token_pair(user.id)


@blp.route("/refresh", methods=["POST"])
@authenticated(blp, refresh=True)
@blp.response(200, AccessTokenSchema)
def refresh() -> dict[str, str]:
    """Present the refresh token as Bearer; get a new access token."""
    return {"access_token": issue_access_token(get_jwt_identity(), get_jwt()["jti"])}


@blp.route("/logout", methods=["POST"])
@authenticated(blp, verify_type=False)
@blp.response(200, LogoutResultSchema)
def logout() -> dict[str, bool]:
    """Revoke the token presented and the refresh token of its session."""
    with unit_of_work() as session:
        audit(session, current_actor(session), "auth.logout", target=("user", get_jwt_identity()))
        revoke(get_jwt(), current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    return {"revoked": True}


@blp.route("/me", methods=["GET"])
@authenticated(blp)
@blp.response(200, UserSchema)
def me() -> dict[str, Any]:
    with unit_of_work() as session:
        actor = current_actor(session)
        return user_view(session.get_one(User, actor.user_id))
