"""Decorators and helpers every protected view uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask_jwt_extended import get_jwt_identity, jwt_required
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.identity import load_actor

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
SECURITY_SCHEMES = {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}


def authenticated(blp: Blueprint, **jwt_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """A valid, unrevoked token is required (checked before the body), documented as bearer auth.

    Place it right under `@blp.route`, above `@blp.arguments`, so a stranger gets 401 before any 422.
    """

    def decorator(view: Callable[..., Any]) -> Any:
        return blp.doc(security=BEARER)(jwt_required(**jwt_options)(view))

    return decorator


def current_actor(session: Session) -> Actor:
    """The caller, read fresh inside the request's transaction so role changes take effect at once."""
    return load_actor(session, uuid.UUID(get_jwt_identity()))
