"""Expected failures, named. `web/errors.py` maps each class to an HTTP status in one table."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, target: tuple[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        # (type, id) of the object refused, for the audit of denials (never shown to the caller).
        self.target = (target[0], str(target[1])) if target else None


class NotFound(DomainError):
    """Unknown, or not visible to the caller: another tenant's object is always NotFound.

    `target` is set only when the object exists but the caller may not see it (`ledger.access.not_found`):
    then the refusal is a probe, and audited as one. An id that names nothing leaves `target` None."""

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
