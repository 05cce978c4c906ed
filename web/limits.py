"""Rate limits (flask-limiter on Redis): logins per address and per account, writes per token.

Limits are read from app.config on each request, so an operator can tune them from the environment.
When Redis cannot answer, requests pass: rate limiting must never stop the ledger from accepting.
"""

from __future__ import annotations

import os

from flask import Flask, current_app, request
from flask_jwt_extended import get_jwt_identity, verify_jwt_in_request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from settings import Settings

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
LIMIT_SETTINGS = {
    # config key: (environment variable, default)
    "LOGIN_LIMIT_PER_ADDRESS": ("VAULTCRAFT_LOGIN_LIMIT_PER_ADDRESS", "30 per minute"),
    "LOGIN_LIMIT_PER_ACCOUNT": ("VAULTCRAFT_LOGIN_LIMIT_PER_ACCOUNT", "10 per minute"),
    "WRITE_LIMIT_PER_TOKEN": ("VAULTCRAFT_WRITE_LIMIT_PER_TOKEN", "100 per second"),
}


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


def login_account_key() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"login:{str(email).strip().lower()}" if email else f"address:{get_remote_address()}"


def _configured(name: str) -> str:
    return str(current_app.config[name])


def login_limit_per_address() -> str:
    return _configured("LOGIN_LIMIT_PER_ADDRESS")


def login_limit_per_account() -> str:
    return _configured("LOGIN_LIMIT_PER_ACCOUNT")


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
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    limiter.init_app(app)


login_limits = (
    limiter.limit(login_limit_per_address, key_func=get_remote_address, scope="login-address"),
    limiter.limit(login_limit_per_account, key_func=login_account_key, scope="login-account"),
)
