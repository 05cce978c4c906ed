"""Refusals as pages: a console request never gets the API's JSON error body, nor a 500 for bad input.

The same rules as the API, in HTML: another organisation's object (or an unknown or malformed id) is
a 404 page, a role that may not do something a 403 page, both audited as the API audits them
(web.denials); a form without its CSRF token a 400 page; a login that has ended a way back to sign in.
"""

from __future__ import annotations

import logging

from flask import Flask, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from ledger.errors import Conflict, DomainError, Forbidden, InvalidRequest, NotFound, Unauthenticated
from web import denials
from web.console.blueprint import bp
from web.errors import http_error

logger = logging.getLogger(__name__)
CONSOLE_PREFIX = "/console"

TITLES = {
    400: "That request could not be used",
    401: "Please sign in",
    403: "Your role cannot open this",
    404: "Nothing here",
    405: "Not allowed here",
    409: "That cannot be done now",
    413: "Too large",
    422: "That request could not be used",
    429: "Too many attempts",
    500: "Something went wrong on our side",
    503: "A service is unavailable",
}
HINTS = {
    403: "Ask an OWNER or ADMIN of your organisation, or go back to the overview.",
    404: "It does not exist, or it belongs to another organisation. Search for it from the lists instead.",
    429: "Wait a minute, then try again.",
    503: "Retry in a few seconds.",
}


def page(status: int, message: str | None = None, hint: str | None = None) -> ResponseReturnValue:
    from flask import g

    body = render_template(
        "console/error.html",
        status=status,
        title=TITLES.get(status, "Something went wrong"),
        message=message,
        hint=hint or HINTS.get(status),
        actor=g.get("console_actor"),
    )
    return body, status


@bp.errorhandler(CSRFError)
def _csrf(error: CSRFError) -> ResponseReturnValue:
    return page(
        400,
        "This form was not sent from a current console page (its security token is missing or stale).",
        "Reload the page and submit it again.",
    )


@bp.errorhandler(DomainError)
def _domain(error: DomainError) -> ResponseReturnValue:
    if isinstance(error, NotFound):
        denials.audit_denial(error, 404)
        return page(404)
    if isinstance(error, Forbidden):
        denials.audit_denial(error, 403)
        return page(403, error.message)
    if isinstance(error, Unauthenticated):
        return redirect(url_for("console.login", reason="ended"))
    if isinstance(error, Conflict):
        return page(409, error.message)
    if isinstance(error, InvalidRequest):
        return page(400, error.message)
    return page(400, error.message)


@bp.errorhandler(HTTPException)
def _http(error: HTTPException) -> ResponseReturnValue:
    return page(error.code or 500, error.description if (error.code or 500) < 500 else None)


@bp.errorhandler(DataError)
def _data(error: DataError) -> ResponseReturnValue:
    return page(400, "A value is out of range for its field.")


@bp.errorhandler(OperationalError)
def _database(error: OperationalError) -> ResponseReturnValue:
    logger.error("database unavailable", exc_info=error)
    return page(503, "The database is unavailable.")


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> ResponseReturnValue:
    logger.exception("unhandled error in the console", exc_info=error)
    return page(500)


def install(app: Flask) -> None:
    """Unmatched console paths (no rule, so no blueprint handler) get the console's page too; every
    other path keeps the API's JSON answer."""

    def console_or_api(error: HTTPException) -> ResponseReturnValue:
        if request.path == CONSOLE_PREFIX or request.path.startswith(CONSOLE_PREFIX + "/"):
            return page(error.code or 500)
        return http_error(error)

    app.register_error_handler(HTTPException, console_or_api)
