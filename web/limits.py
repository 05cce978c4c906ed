"""Rate limits (flask-limiter on Redis): logins, signups and password changes, writes per token.

A login is limited per address, per account from one address, and per account from everywhere at a
slower rate: wrong passwords sent from one address then lock that address out of the account, not
the account's real user at another address, while a guesser spread over many addresses still meets
the account-wide limit.

Limits are read from app.config on each request, so an operator can tune them from the environment.
When Redis cannot answer, requests pass: rate limiting must never stop the ledger from accepting.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from flask_jwt_extended import get_jwt_identity, verify_jwt_in_request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.storage import RedisStorage
from werkzeug.exceptions import RequestEntityTooLarge

from settings import Settings
from web.errors import RequestRefused
from web.json_body import read_json_body

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
LIMIT_SETTINGS = {
    # config key: (environment variable, default)
    "LOGIN_LIMIT_PER_ADDRESS": ("VAULTCRAFT_LOGIN_LIMIT_PER_ADDRESS", "30 per minute"),
    "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS": ("VAULTCRAFT_LOGIN_LIMIT_PER_ACCOUNT_ADDRESS", "10 per minute"),
    "LOGIN_LIMIT_PER_ACCOUNT": ("VAULTCRAFT_LOGIN_LIMIT_PER_ACCOUNT", "100 per hour"),
    # A signup costs a bcrypt hash (about 200 ms of CPU at the production work factor).
    "SIGNUP_LIMIT_PER_ADDRESS": ("VAULTCRAFT_SIGNUP_LIMIT_PER_ADDRESS", "5 per minute"),
    # Checking the current password is a guess at it, made with a token: as many as a login allows.
    "PASSWORD_CHANGE_LIMIT_PER_USER": ("VAULTCRAFT_PASSWORD_CHANGE_LIMIT_PER_USER", "10 per minute"),
    "WRITE_LIMIT_PER_TOKEN": ("VAULTCRAFT_WRITE_LIMIT_PER_TOKEN", "100 per second"),
}


# INCRBY and EXPIRE exactly as the limits package's own script, then the key's TTL in the same trip.
_HIT_AND_TTL = b"""
local current = redis.call("incrby", KEYS[1], ARGV[2])
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""
# flask.g key: what this request's hits learned, by storage key: (count, seconds to the window's end).
_WINDOWS_SEEN = "vaultcraft_limit_windows"
STORAGE_SCHEME_PREFIX = "vaultcraft+"


class OneTripRedisStorage(RedisStorage):
    """The limits package's Redis storage, with a fixed-window hit and its headers in one round trip.

    A write is counted with a script (INCRBY, EXPIRE), then the X-RateLimit headers ask for the
    window's count (GET) and its end (TTL): three round trips per request. Here the script also
    returns the TTL, and what a hit learned answers this request's GET and TTL for that key, as the
    two reads would have a moment later. Outside a request, or for a key this request did not hit,
    the reads go to Redis as before.
    """

    STORAGE_SCHEME = [f"{STORAGE_SCHEME_PREFIX}{scheme}" for scheme in ("redis", "rediss", "unix")]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(STORAGE_SCHEME_PREFIX), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._hit_and_ttl = self.get_connection().register_script(_HIT_AND_TTL)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        count, ttl = self._hit_and_ttl([self.prefixed_key(key)], [expiry, amount])
        if has_request_context():
            g.setdefault(_WINDOWS_SEEN, {})[key] = (int(count), int(ttl))
        return int(count)

    def get(self, key: str) -> int:
        seen = _window_seen(key)
        return super().get(key) if seen is None else seen[0]

    def get_expiry(self, key: str) -> float:
        seen = _window_seen(key)
        return super().get_expiry(key) if seen is None else max(seen[1], 0) + time.time()


def _window_seen(key: str) -> tuple[int, int] | None:
    if not has_request_context():
        return None
    windows: dict[str, tuple[int, int]] | None = g.get(_WINDOWS_SEEN)
    return None if windows is None else windows.get(key)


def caller_key() -> str:
    """The verified token's user when there is one, else the client address.

    Only a token that verifies names a user, so nobody can spend someone else's allowance.
    """
    try:
        verify_jwt_in_request(optional=True)
        identity = get_jwt_identity()
    except Exception:  # an invalid token is refused later by the view; here it is just an address
        identity = None
    return f"user:{identity}" if identity else f"address:{get_remote_address()}"


def _login_email() -> str | None:
    """The account a login names, if its body can be read.

    A body over the size limit cannot be read here (Flask raises 413 for the view to answer); it
    counts against the address, instead of failing the limiter with an error logged per request."""
    try:
        body = read_json_body(request)
    except (RequestEntityTooLarge, RequestRefused):
        body = None  # the view refuses it in the contract's shape
    email = body.get("email") if isinstance(body, dict) else None
    if email is None and request.mimetype == "application/x-www-form-urlencoded":
        email = request.form.get("email")  # the console's login form: the same account, the same counters
    return str(email).strip().lower() if email else None


def login_account_key() -> str:
    """The account a login names, else the client address."""
    email = _login_email()
    return f"login:{email}" if email else f"address:{get_remote_address()}"


def login_account_address_key() -> str:
    """The account a login names, from this address."""
    email = _login_email()
    return f"login:{email}:address:{get_remote_address()}" if email else f"address:{get_remote_address()}"


def _configured(name: str) -> str:
    return str(current_app.config[name])


def login_limit_per_address() -> str:
    return _configured("LOGIN_LIMIT_PER_ADDRESS")


def login_limit_per_account() -> str:
    return _configured("LOGIN_LIMIT_PER_ACCOUNT")


def login_limit_per_account_address() -> str:
    return _configured("LOGIN_LIMIT_PER_ACCOUNT_ADDRESS")


def signup_limit_per_address() -> str:
    return _configured("SIGNUP_LIMIT_PER_ADDRESS")


def password_change_limit_per_user() -> str:
    return _configured("PASSWORD_CHANGE_LIMIT_PER_USER")


def write_limit_per_token() -> str:
    return _configured("WRITE_LIMIT_PER_TOKEN")


limiter = Limiter(
    key_func=caller_key,
    default_limits=[write_limit_per_token],
    default_limits_exempt_when=lambda: request.method in READ_METHODS,
    headers_enabled=True,
    swallow_errors=True,
    key_prefix="vaultcraft-limits",
)


def init_limits(app: Flask, settings: Settings) -> None:
    for config_key, (variable, default) in LIMIT_SETTINGS.items():
        app.config.setdefault(config_key, os.environ.get(variable, default))
    app.config["RATELIMIT_STORAGE_URI"] = f"{STORAGE_SCHEME_PREFIX}{settings.redis_url}"
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    limiter.init_app(app)


# Shared: the API's login and the console's sign-in form spend one allowance, so a guesser gains
# nothing by taking turns between them.
login_limits = (
    limiter.shared_limit(login_limit_per_address, "login-address", key_func=get_remote_address),
    limiter.shared_limit(login_limit_per_account_address, "login-account-address", key_func=login_account_address_key),
    limiter.shared_limit(login_limit_per_account, "login-account", key_func=login_account_key),
)
signup_limit = limiter.limit(signup_limit_per_address, key_func=get_remote_address, scope="signup-address")
password_change_limit = limiter.limit(password_change_limit_per_user, key_func=caller_key, scope="password-change")
