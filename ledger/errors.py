"""Expected failures, named. `web/errors.py` maps each class to an HTTP status in one table."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(DomainError):
    """Unknown, or not visible to the caller: another tenant's object is always NotFound."""

    code = "NOT_FOUND"


class Forbidden(DomainError):
    """Visible to the caller, but the caller's role does not allow the action."""

    code = "FORBIDDEN"


class Conflict(DomainError):
    """The object's current state does not allow the action."""

    code = "CONFLICT"


class InvalidRequest(DomainError):
    """Well-formed input that breaks a business rule."""

    code = "INVALID_REQUEST"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
