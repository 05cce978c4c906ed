"""Password hashing with bcrypt."""

from __future__ import annotations

import os

import bcrypt

# bcrypt only looks at the first 72 bytes; longer passwords are refused at the API instead.
PASSWORD_BYTES_MAX = 72


def _rounds() -> int:
    # The test suite lowers the work factor to keep hundreds of signups fast; production keeps 12.
    return int(os.environ.get("VAULTCRAFT_BCRYPT_ROUNDS", "12"))


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_rounds())).decode()


def verify_password(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode()[:PASSWORD_BYTES_MAX], password_hash.encode())


_dummy_hash: str | None = None


def burn_verification_time(password: str) -> None:
    """Check against a throwaway hash, so an unknown email costs as long as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password("not-a-password")
    verify_password(password, _dummy_hash)
