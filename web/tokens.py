"""JWT set-up and revocation. Access tokens are short-lived; refresh tokens rotate on use.

Every token carries its login's family id (`fam`, see ledger.sessions). A token is refused when its
own id, its refresh token's id or its family is revoked: one Redis EXISTS over those keys, in the
round trip the check always made. Postgres (revoked_tokens) is the record, Redis the cache.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import redis
from flask import Flask, current_app, g, has_request_context
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from flask_jwt_extended.config import config as jwt_config
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import sessions
from ledger.sessions import Revocation
from models import RevokedToken
from models.db import session_factory
from settings import Settings, check_jwt_secret_key, get_settings
from web.errors import error_response

logger = logging.getLogger(__name__)


class VerifiedTokenCache(JWTManager):
    """flask-jwt-extended, remembering the tokens it has verified.

    A client presents the same access token on every request for its whole life, and verifying it
    again (base64 with a per-character alphabet check, twice over, JSON, HMAC) is a tenth of a
    transfer's CPU. What a verification proves of a token's text holds for as long as the key: its
    signature and its claims. Only the time-bound claims (exp, iat, nbf) can change their answer;
    they are checked again on every use, and a token that fails them is decoded afresh, so it is
    refused exactly as before. Revocation is not decided here: the blocklist loader asks every time.
    """

    TOKENS_MAX = 4096

    def __init__(self) -> None:
        super().__init__()
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        key = (encoded_token, jwt_config.decode_key)
        claims = self._verified.get(key)
        if claims is not None and _times_hold(claims, jwt_config.leeway):
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token)
        if len(self._verified) >= self.TOKENS_MAX:
            self._verified.clear()  # simpler than LRU, and a token costs one verification to re-learn
        self._verified[key] = dict(claims)
        return claims


def _times_hold(claims: dict[str, Any], leeway: float) -> bool:
    """PyJWT's time checks (exp, iat, nbf), as it makes them on every decode."""
    now = time.time()
    return (
        ("exp" not in claims or int(claims["exp"]) > now - leeway)
        and ("iat" not in claims or int(claims["iat"]) <= now + leeway)
        and ("nbf" not in claims or int(claims["nbf"]) <= now + leeway)
    )


jwt = VerifiedTokenCache()

REVOKED_KEY_PREFIX = "vaultcraft:revoked:"
REFRESH_JTI_CLAIM = "rjti"
FAMILY_CLAIM = "fam"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)


def configure_jwt(app: Flask, settings: Settings) -> None:
    """Token settings on the app; a signing key under 32 bytes is refused (SettingInvalid)."""
    check_jwt_secret_key(settings.jwt_secret_key)
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.refresh_token_days),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ERROR_MESSAGE_KEY="message",
    )
    jwt.init_app(app)
    app.wsgi_app = _any_case_bearer(app.wsgi_app)  # type: ignore[method-assign]


# "bearer" as a whole auth-scheme, at the start or after a comma (a header may list several).
_BEARER_SCHEME = re.compile(r"(^|,)(\s*)bearer(?=\s)", re.IGNORECASE)


def _any_case_bearer(wsgi_app: Any) -> Any:
    """RFC 7235 auth-schemes are case-insensitive (RFC 6750 names `Bearer`); flask-jwt-extended
    compares the scheme exactly. Spelled any other way, it is rewritten to `Bearer` before anything
    reads the header: the limiter's key, the view's check and the verified-token cache all see one
    form. The common spelling costs one prefix test."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION")
        if header and not header.startswith("Bearer "):
            environ["HTTP_AUTHORIZATION"] = _BEARER_SCHEME.sub(r"\1\2Bearer", header)
        return wsgi_app(environ, start_response)

    return app


def _refresh_expiry() -> datetime:
    lifetime: timedelta = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    return datetime.now(UTC) + lifetime


def encode_token_pair(user_id: str, family_id: str, refresh_jti: str) -> dict[str, str]:
    """A refresh token with id `refresh_jti` and an access token naming it, both of the family."""
    family = {FAMILY_CLAIM: family_id}
    refresh = create_refresh_token(identity=user_id, additional_claims={"jti": refresh_jti, **family})
    access = create_access_token(identity=user_id, additional_claims={REFRESH_JTI_CLAIM: refresh_jti, **family})
    return {"access_token": access, "refresh_token": refresh}


def start_login(session: Session, user_id: uuid.UUID) -> dict[str, str]:
    """A new family and its first pair, in the caller's unit of work."""
    refresh_jti = str(uuid.uuid4())
    family_id = sessions.start_family(session, user_id, refresh_jti=refresh_jti, expires_at=_refresh_expiry())
    return encode_token_pair(str(user_id), str(family_id), refresh_jti)


def rotate_refresh_token(session: Session, payload: dict[str, Any]) -> tuple[sessions.Refreshed, dict[str, str]]:
    """Spend the presented refresh token (see ledger.sessions.rotate); the new pair if it rotated."""
    next_jti = str(uuid.uuid4())
    refreshed = sessions.rotate(
        session,
        family_id=uuid.UUID(payload[FAMILY_CLAIM]),
        user_id=uuid.UUID(payload["sub"]),
        presented_jti=payload["jti"],
        next_jti=next_jti,
        expires_at=_refresh_expiry(),
    )
    if refreshed.outcome is not sessions.RefreshOutcome.ROTATED:
        return refreshed, {}
    return refreshed, encode_token_pair(payload["sub"], payload[FAMILY_CLAIM], next_jti)


def family_of(payload: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(payload[FAMILY_CLAIM])


def _keys_of(payload: dict[str, Any]) -> list[str]:
    """The token's own id, for an access token the refresh token it came from, and its family."""
    keys = [payload["jti"]]
    if payload.get(REFRESH_JTI_CLAIM):
        keys.append(payload[REFRESH_JTI_CLAIM])
    keys.append(sessions.family_key(payload[FAMILY_CLAIM]))
    return keys


def revoke_token(session: Session, payload: dict[str, Any]) -> list[Revocation]:
    """Logout: the token, its refresh token and the rest of its login, durably in the caller's unit of
    work. Pass the answer to `cache_revocations` once it commits."""
    refresh_lifetime: timedelta = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    # Keep the mark as long as the longest-lived token it covers could still be presented.
    ttl_seconds = max(int(payload["exp"] - time.time()), int(refresh_lifetime.total_seconds()), 1)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    own = [Revocation(key, expires_at) for key in _keys_of(payload)[:-1]]
    sessions.record_revocations(session, own)
    return own + sessions.revoke_families(session, uuid.UUID(payload["sub"]), only=family_of(payload))


def cache_revocations(revocations: list[Revocation]) -> None:
    """Tell the Redis cache what was revoked (and committed) in Postgres.

    Postgres is the record, so a revocation survives a Redis restart or outage; Redis answers the checks.
    """
    if has_request_context():
        g.pop(_REVOKED_ANSWERS, None)  # this request's cached answer is out of date
    if not revocations:
        return
    now = datetime.now(UTC)
    try:
        pipe = redis_client().pipeline()
        for revocation in revocations:
            ttl_seconds = max(int((revocation.expires_at - now).total_seconds()), 1)
            pipe.set(REVOKED_KEY_PREFIX + revocation.key, "1", ex=ttl_seconds)
        pipe.execute()
    except redis.RedisError:
        logger.warning("revocation not cached in Redis; Postgres still holds it", exc_info=True)
        _forget_cache_is_complete()


# Redis holds every revocation Postgres holds while this key exists: a miss is then final. It is
# set after a full copy from Postgres and lives a bounded time, so a cache that missed a write (a
# restart that lost everything, or a logout during a network fault) is re-copied within that bound.
CACHE_COMPLETE_KEY = "vaultcraft:revoked:complete"
CACHE_COMPLETE_SECONDS = 60


def _forget_cache_is_complete() -> None:
    try:
        redis_client().delete(CACHE_COMPLETE_KEY)
    except redis.RedisError:
        logger.error("revocation cache may miss a revocation until it is re-copied", exc_info=True)


def _revoked_in_redis(jtis: list[str]) -> tuple[bool, bool] | None:
    """(revoked, the cache is complete) in one round trip, or None when Redis cannot answer."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.exists(*(REVOKED_KEY_PREFIX + jti for jti in jtis))
        pipe.exists(CACHE_COMPLETE_KEY)
        revoked, complete = pipe.execute()
    except redis.RedisError:
        logger.warning("revocation cache unavailable; asking Postgres", exc_info=True)
        return None
    return bool(revoked), bool(complete)


def _copy_revocations_to_redis() -> set[str]:
    """Every unexpired revocation into Redis, then the mark that says the cache is complete.
    Returns the revoked jtis it read, so the check that asked needs no second query."""
    with session_factory()() as session:
        rows = session.execute(
            select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.expires_at > func.now())
        ).all()
    now = datetime.now(UTC)
    try:
        pipe = redis_client().pipeline(transaction=False)
        for jti, expires_at in rows:
            pipe.set(REVOKED_KEY_PREFIX + jti, "1", ex=max(int((expires_at - now).total_seconds()), 1))
        pipe.set(CACHE_COMPLETE_KEY, "1", ex=CACHE_COMPLETE_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("revocation cache not refilled; Postgres answers meanwhile", exc_info=True)
    return {jti for jti, _expires_at in rows}


def _revoked_in_postgres(jtis: list[str]) -> bool:
    with session_factory()() as session:
        return session.scalar(select(RevokedToken.jti).where(RevokedToken.jti.in_(jtis)).limit(1)) is not None


def _revoked(jtis: list[str]) -> bool:
    cached = _revoked_in_redis(jtis)
    if cached is not None:
        revoked, complete = cached
        if revoked or complete:
            return revoked  # one Redis round trip: the common case
        return not _copy_revocations_to_redis().isdisjoint(jtis)
    return _revoked_in_postgres(jtis)


# flask.g key: this request's revocation answers, by the token's jtis.
_REVOKED_ANSWERS = "vaultcraft_revoked_answers"


@jwt.token_in_blocklist_loader
def _is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    if not payload.get(FAMILY_CLAIM):
        return True  # issued before logins became families: it could not be revoked with its login
    jtis = _keys_of(payload)
    # A token is verified twice per write request (the rate limiter's key, then the view): ask once.
    answers: dict[tuple[str, ...], bool] | None = g.setdefault(_REVOKED_ANSWERS, {}) if has_request_context() else None
    if answers is not None and tuple(jtis) in answers:
        return answers[tuple(jtis)]
    revoked = _revoked(jtis)
    if answers is not None:
        answers[tuple(jtis)] = revoked
    return revoked


def _unauthenticated(code: str, message: str) -> Any:
    return error_response(401, code, message)


@jwt.unauthorized_loader
def _missing_token(reason: str) -> Any:
    return _unauthenticated("UNAUTHENTICATED", reason)


@jwt.invalid_token_loader
def _invalid_token(reason: str) -> Any:
    return _unauthenticated("INVALID_TOKEN", reason)


@jwt.expired_token_loader
def _expired_token(_header: dict[str, Any], _payload: dict[str, Any]) -> Any:
    return _unauthenticated("TOKEN_EXPIRED", "token has expired")


@jwt.revoked_token_loader
def _revoked_token(_header: dict[str, Any], _payload: dict[str, Any]) -> Any:
    return _unauthenticated("TOKEN_REVOKED", "token has been revoked")


@jwt.user_lookup_error_loader
def _user_gone(_header: dict[str, Any], _payload: dict[str, Any]) -> Any:
    return _unauthenticated("INVALID_TOKEN", "the user behind this token no longer exists")


@jwt.token_verification_failed_loader
def _verification_failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Any:
    return _unauthenticated("INVALID_TOKEN", "token failed verification")
