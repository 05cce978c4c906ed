"""Sign in and out of the console, and the guard every other console page passes first.

Signing in checks the same accounts with the same code as POST /api/v1/auth/login (ledger.identity),
under the same rate limits (web.limits.login_limits, whose counters the two share), and audits the
same events. Every POST, the login form's included, carries a CSRF token (flask-wtf), checked here
before anything else: the JSON API, authenticated by bearer tokens a browser never sends on its
own, is not subject to it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from ledger import identity
from ledger.errors import Unauthenticated
from web.console import sessions
from web.console.blueprint import bp, render
from web.db import unit_of_work
from web.limits import login_limits
from web.request_context import audit, record_login_failure
from web.tokens import cache_revocations

csrf = CSRFProtect()
OPEN_ENDPOINTS = frozenset({"console.login", "console.login_submit", "console.static"})
EMAIL_LENGTH_MAX = 320
PASSWORD_LENGTH_MAX = 1024


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith("/console") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("console.overview")


@bp.before_request
def guard() -> Any:
    """CSRF first (a forged POST is refused even when signed in), then a live login."""
    csrf.protect()
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    login = sessions.current_login()
    if login is None:
        return _to_login("expired" if request.cookies.get(sessions.COOKIE_NAME) else None)
    try:
        with unit_of_work() as session:
            g.console_actor = sessions.verify(session, login)
    except Unauthenticated:
        return _to_login("ended")
    g.console_login = login
    sessions.touch()
    return None


def _to_login(reason: str | None) -> Response:
    from flask import session

    session.clear()
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("console.login", next=target, reason=reason))


@bp.route("/login", methods=["GET"])
def login() -> str:
    return render("console/login.html", next=_safe_next(request.args.get("next")), reason=request.args.get("reason"))


@bp.route("/login", methods=["POST"])
@login_limits[0]
@login_limits[1]
@login_limits[2]
def login_submit() -> Any:
    email = (request.form.get("email") or "").strip()[:EMAIL_LENGTH_MAX]
    password = (request.form.get("password") or "")[:PASSWORD_LENGTH_MAX]
    target = _safe_next(request.form.get("next"))
    if not email or not password:
        return render("console/login.html", next=target, error="Enter your email and password.", email=email), 400
    try:
        with unit_of_work() as session:
            user = identity.authenticate(session, email=email, password=password)
            audit(session, user, "auth.login_succeeded", target=user, after={"via": "console"})
            sessions.begin(session, user.id)
    except Unauthenticated as refused:
        record_login_failure(email, refused.code)
        message = (
            "This user has been deactivated." if refused.code == "USER_DEACTIVATED" else "Wrong email or password."
        )
        return render("console/login.html", next=target, error=message, email=email), 401
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """End this console login on the server: its cookie, replayed, opens nothing afterwards."""
    login = g.console_login
    with unit_of_work() as session:
        audit(session, g.console_actor, "auth.logout", target=("user", login.user_id), after={"via": "console"})
        revocations = sessions.end(session, login)
    cache_revocations(revocations)
    return redirect(url_for("console.login", reason="signed-out"))
