"""Refusals leave a trace: every 403, and every 404 for an object that exists but is not the caller's.

A 403 is an authenticated caller trying what their role does not allow; a 404 whose error names a
`target` (ledger.access.not_found) is one asking for an object that exists in another organisation,
or one their role hides: a probe. Either is written to the caller's own organisation's audit trail as
`access.denied` (ledger.audit.record_denial), in a transaction of its own (the request's rolled back),
with the route attempted, the object's type and id, and the source address. A 404 for an id that
names nothing is not a probe of anyone and leaves no row.

Only the refusal path pays: the ordinary request path is untouched. So that probing cannot flood the
trail, each caller has an allowance of rows per minute (a Redis counter that expires a minute after
the caller's first denial; `AUDIT_DENIALS_PER_ACTOR_PER_MINUTE`, from the environment variable of the
same name with a `VAULTCRAFT_` prefix); the rest are only counted, in
`vaultcraft_access_denials_total{recorded="false"}`. When Redis does not answer, the row is written:
losing the trace is worse than a burst of rows while Redis is down.
"""

from __future__ import annotations

import logging
import os
import re
import uuid

import redis
from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue

from ledger.errors import DomainError, Forbidden, NotFound
from ledger.identity import load_actor
from ledger.integrity import audit
from ops.metrics import ACCESS_DENIALS
from web.db import unit_of_work
from web.errors import domain_error
from web.request_context import origin
from web.tokens import redis_client

logger = logging.getLogger(__name__)

LIMIT_CONFIG = "AUDIT_DENIALS_PER_ACTOR_PER_MINUTE"
LIMIT_DEFAULT = 20
WINDOW_SECONDS = 60
COUNTER_KEY_PREFIX = "vaultcraft:denials:"
# `<uuid:wallet_id>` in a Flask rule, written `{wallet_id}` as the OpenAPI document writes it.
_RULE_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _caller_id() -> uuid.UUID | None:
    """The verified token's user, or the console's signed-in user, when this request has one (an
    anonymous refusal is not audited)."""
    if g.get("console_user_id"):
        return uuid.UUID(str(g.console_user_id))
    claims = g.get("_jwt_extended_jwt")
    subject = claims.get("sub") if claims else None
    try:
        return uuid.UUID(str(subject)) if subject else None
    except ValueError:
        return None


def _attempted() -> str:
    rule = request.url_rule.rule if request.url_rule else request.path
    path = _RULE_PARAMETER.sub(r"{\1}", rule).rstrip("/")
    return f"{request.method} {path}"


def _target(error: DomainError) -> tuple[str, str] | None:
    """What was refused: the error's own target, else the last id in the path (`wallet_id` → wallet)."""
    if error.target:
        return error.target
    ids = [(name, value) for name, value in (request.view_args or {}).items() if isinstance(value, uuid.UUID)]
    if not ids:
        return None
    name, value = ids[-1]
    return name.removesuffix("_id"), str(value)


def _within_allowance(user_id: uuid.UUID) -> bool:
    """Count this denial against the caller's minute: SET NX with the window's expiry, then INCR, in one
    round trip; the window starts at the caller's first denial and ends a minute later."""
    key = f"{COUNTER_KEY_PREFIX}{user_id}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
        pipe.incr(key)
        _, count = pipe.execute()
    except redis.RedisError:
        logger.warning("denial allowance unknown (Redis did not answer): auditing the denial")
        return True
    return int(count) <= int(current_app.config[LIMIT_CONFIG])


def audit_denial(error: DomainError, status: int) -> None:
    """Write the refusal's `access.denied` row, within the caller's allowance; never fails the answer."""
    if status == 404 and error.target is None:
        return
    user_id = _caller_id()
    if user_id is None:
        return
    if not _within_allowance(user_id):
        ACCESS_DENIALS.labels(str(status), "false").inc()
        return
    try:
        with unit_of_work() as session:
            actor = load_actor(session, user_id)
            audit.record_denial(
                session,
                actor,
                status=status,
                code=error.code,
                attempted=_attempted(),
                target=_target(error),
                origin=origin(),
            )
    except Exception:  # the caller still gets their 403 / 404
        logger.exception("could not audit a denial")
        return
    ACCESS_DENIALS.labels(str(status), "true").inc()


def _forbidden(error: Forbidden) -> ResponseReturnValue:
    audit_denial(error, 403)
    return domain_error(error)


def _not_found(error: NotFound) -> ResponseReturnValue:
    audit_denial(error, 404)
    return domain_error(error)


def install(app: Flask) -> None:
    """Answer Forbidden and NotFound as every domain error is answered, auditing them first."""
    app.config.setdefault(LIMIT_CONFIG, int(os.environ.get(f"VAULTCRAFT_{LIMIT_CONFIG}", LIMIT_DEFAULT)))
    app.register_error_handler(Forbidden, _forbidden)
    app.register_error_handler(NotFound, _not_found)
