"""One table from failure to HTTP status, and the contract's error body for every error."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from ledger.errors import Conflict, DomainError, Forbidden, InvalidRequest, NotFound, Unauthenticated

logger = logging.getLogger(__name__)

DOMAIN_STATUS: dict[type[DomainError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 422,
}

HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


class RequestRefused(Exception):
    """A request refused before any view runs (its body, its media type), with its own status and code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> ResponseReturnValue:
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonify(body), status, headers or {}


def domain_error(error: DomainError) -> ResponseReturnValue:
    status = next(s for kind, s in DOMAIN_STATUS.items() if isinstance(error, kind))
    return error_response(status, error.code, error.message, error.details)


def http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    details = data.get("errors") or data.get("messages")
    message = data.get("message") or error.description or error.name
    if status == 422 and details:
        message = "request failed validation"
        # webargs nests errors under the location ("json", "query"); the field names are what matter.
        if isinstance(details, dict) and len(details) == 1:
            details = next(iter(details.values()))
    return error_response(
        status, HTTP_CODES.get(status, error.name.upper().replace(" ", "_")), message, details, data.get("headers")
    )


def _request_refused(error: RequestRefused) -> ResponseReturnValue:
    return error_response(error.status, error.code, error.message, error.details)


def _database_unavailable(error: OperationalError) -> ResponseReturnValue:
    logger.error("database unavailable", exc_info=error)
    return error_response(503, "DATABASE_UNAVAILABLE", "the database is unavailable; retry shortly")


def _integrity_error(error: IntegrityError) -> ResponseReturnValue:
    # The database refused a write the application should have caught first: say so, change nothing.
    logger.warning("integrity error reached the API", exc_info=error)
    return error_response(409, "CONFLICT", "the request conflicts with the current state")


def _data_error(error: DataError) -> ResponseReturnValue:
    return error_response(422, "VALIDATION_ERROR", "a value is out of range for its field")


def _unexpected(error: Exception) -> ResponseReturnValue:
    logger.exception("unhandled error", exc_info=error)
    return error_response(500, "INTERNAL_ERROR", "internal error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RequestRefused, _request_refused)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(IntegrityError, _integrity_error)
    app.register_error_handler(DataError, _data_error)
    app.register_error_handler(Exception, _unexpected)
