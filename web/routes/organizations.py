"""Users of the caller's organisation."""

from __future__ import annotations

from typing import Any

from ledger import identity
from models import Role
from web.api import Blueprint
from web.db import unit_of_work
from web.request_context import audit
from web.schemas.auth import NewUserSchema, UserSchema
from web.security import authenticated, current_actor
from web.serializers import user_view

blp = Blueprint("organizations", __name__, url_prefix="/api/v1/organizations", description="Organisations")


@blp.route("/users", methods=["POST"])
@authenticated(blp)
@blp.arguments(NewUserSchema)
@blp.response(201, UserSchema)
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
