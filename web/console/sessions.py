"""Console logins: a signed cookie that names a login kept on the server, so logging out ends it there.

A console login is a token family (ledger.sessions), as an API login is: the cookie carries the
user's id, the family's id and two times (when the login began, when it was last used), signed with
the console's secret key. Each request checks the family's row in Postgres (one primary-key lookup),
so logging out (the family revoked), logging out everywhere, a password change or a deactivation
ends the console login at once, and a copy of the cookie replayed afterwards opens nothing.

The cookie is HttpOnly, SameSite=Lax, limited to /console, and Secure whenever the request came over
https. Expiry is the server's: `idle` seconds after the last request, `absolute` after the login.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import sessions
from ledger.access import Actor
from ledger.errors import Unauthenticated
from ledger.identity import load_actor
from models import TokenFamily
from settings import Settings

COOKIE_NAME = "vaultcraft_console"
IDLE_CONFIG = "CONSOLE_IDLE_SECONDS"
ABSOLUTE_CONFIG = "CONSOLE_SESSION_SECONDS"
# The last-used time is written back at most this often: every request would re-send the cookie.
SEEN_RESOLUTION_SECONDS = 30


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure exactly when the request was made over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure) or super().get_cookie_secure(app)


def configure(app: Flask, settings: Settings) -> None:
    app.secret_key = settings.console_secret_key
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.setdefault(IDLE_CONFIG, settings.console_idle_minutes * 60)
    app.config.setdefault(ABSOLUTE_CONFIG, settings.console_session_hours * 3600)


@dataclass(frozen=True)
class Login:
    user_id: uuid.UUID
    family_id: uuid.UUID


def begin(db: Session, user_id: uuid.UUID) -> None:
    """A new login for the user: a family on the server, its id in a fresh cookie (nothing of any
    earlier cookie is kept, so a session id planted before login is worth nothing after it)."""
    lifetime = timedelta(seconds=int(current_app.config[ABSOLUTE_CONFIG]))
    family_id = sessions.start_family(
        db, user_id, refresh_jti=f"console:{uuid.uuid4()}", expires_at=datetime.now(UTC) + lifetime
    )
    now = int(time.time())
    session.clear()
    session.update({"uid": str(user_id), "fam": str(family_id), "iat": now, "seen": now})


def current_login() -> Login | None:
    """The cookie's login if it is well formed and within its idle and absolute lifetimes."""
    try:
        login = Login(uuid.UUID(session["uid"]), uuid.UUID(session["fam"]))
        started, seen = int(session["iat"]), int(session["seen"])
    except (KeyError, ValueError, TypeError):
        return None
    now = time.time()
    if now - seen > int(current_app.config[IDLE_CONFIG]) or now - started > int(current_app.config[ABSOLUTE_CONFIG]):
        return None
    return login


def verify(db: Session, login: Login) -> Actor:
    """The login's user, if its family is still live on the server (Unauthenticated otherwise)."""
    row = db.execute(
        select(TokenFamily.user_id, TokenFamily.revoked_at, TokenFamily.expires_at).where(
            TokenFamily.id == login.family_id
        )
    ).one_or_none()
    if row is None or row.user_id != login.user_id or row.revoked_at is not None:
        raise Unauthenticated("this console login has ended", code="SESSION_ENDED")
    if row.expires_at <= datetime.now(UTC):
        raise Unauthenticated("this console login has expired", code="SESSION_EXPIRED")
    actor = load_actor(db, login.user_id)
    g.console_user_id = login.user_id
    return actor


def touch() -> None:
    now = int(time.time())
    if now - int(session.get("seen", 0)) >= SEEN_RESOLUTION_SECONDS:
        session["seen"] = now


def end(db: Session, login: Login) -> list[sessions.Revocation]:
    """Revoke the login's family durably (the caller commits, then tells the revocation cache)."""
    session.clear()
    return sessions.revoke_families(db, login.user_id, only=login.family_id)
