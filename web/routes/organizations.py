"""Users of the caller's organisation."""

from __future__ import annotations

import uuid
from typing import Any

from ledger import identity
from models import Role
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit
from web.schemas.auth import NewUserSchema, UserActiveSchema, UserSchema
from web.security import authenticated, current_actor
from web.serializers import user_view
from web.tokens import cache_revocations

blp = Blueprint("organizations", __name__, url_prefix="/api/v1/organizations", description="Organisations")


@blp.route("/users", methods=["POST"])
@authenticated(blp)
@blp.arguments(NewUserSchema)
@blp.response(201, UserSchema)
@links(
    blp,
    (201,),
    {
        "ChangeUserActive": link(
            "patch",
            "/api/v1/organizations/users/{user_id}",
            "deactivate or restore the user",
            parameters={"user_id": "$response.body#/id"},
        )
    },
)
def add_user(body: dict[str, Any]) -> dict[str, Any]:
    """OWNER/ADMIN add an ADMIN or MEMBER to their own organisation."""
    with unit_of_work() as session:
        actor = current_actor(session)
        user = identity.add_user(
            session,
            actor,
            email=body["email"],
            password=body["password"],
            full_name=body["full_name"],
            role=Role(body["role"]),
        )
        audit(session, actor, "user.created", target=user, after={"email": user.email, "role": user.role})
        return user_view(user)


@blp.route("/users/<uuid:user_id>", methods=["PATCH"])
@authenticated(blp)
@blp.arguments(UserActiveSchema)
@blp.response(200, UserSchema)
def set_user_active(body: dict[str, Any], user_id: uuid.UUID) -> dict[str, Any]:
    """OWNER/ADMIN deactivate (`active: false`) or restore a user of their organisation. A deactivated
    user's tokens are refused at once and they cannot log in."""
    with unit_of_work() as session:
        actor = current_actor(session)
        change = identity.set_active(session, actor, user_id, active=body["active"])
        user = change.user
        if change.changed:
            action = "user.reactivated" if user.active else "user.deactivated"
            audit(
                session, actor, action, target=user, before={"active": change.was_active}, after={"active": user.active}
            )
        view = user_view(user)
    cache_revocations(change.revocations)
    return view
