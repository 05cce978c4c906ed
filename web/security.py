"""Decorators and helpers every protected view uses."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from flask import current_app, g
from flask_jwt_extended import get_jwt_identity, verify_jwt_in_request
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
        @functools.wraps(view)
        def verified(*args: Any, **kwargs: Any) -> Any:
            if not _verified_by_rate_limiter(jwt_options):
                verify_jwt_in_request(**jwt_options)
            return current_app.ensure_sync(view)(*args, **kwargs)

        return blp.doc(security=BEARER)(verified)

    return decorator


def _verified_by_rate_limiter(jwt_options: dict[str, Any]) -> bool:
    """The rate limiter keys writes by the verified token's user, so on a write the token was already
    decoded, its signature, expiry, type and revocation checked, in this request: decoding it again
    would only repeat that work. Only a plain access token counts (no options), as the limiter checks.
    """
    token = g.get("_jwt_extended_jwt")
    return not jwt_options and bool(token) and token.get("type") == "access"


def current_user_id() -> uuid.UUID:
    """The verified token's user, for a view that reads the caller inside its own statement."""
    return uuid.UUID(get_jwt_identity())


def current_actor(session: Session) -> Actor:
    """The caller, read fresh inside the request's transaction so role changes take effect at once."""
    return load_actor(session, current_user_id())
