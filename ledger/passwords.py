"""Password hashing with bcrypt, and the strength check new passwords pass."""

from __future__ import annotations

import os
import re

import bcrypt

from ledger.errors import InvalidRequest


class WeakPassword(InvalidRequest):
    code = "WEAK_PASSWORD"


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


# --- strength (NIST SP 800-63B 3.1.1.2: a length floor and a check against guessable passwords) -----

PASSWORD_LENGTH_MIN = 8
SERVICE_NAME = "VaultCraft"
# zxcvbn's score: 3 is "safely unguessable" (about 10^8 guesses or more), what its authors advise
# for a password that guards money. No composition rules: length and unguessability are what count.
PASSWORD_SCORE_MIN_DEFAULT = 3
_CONTEXT_WORD_LENGTH_MIN = 3


def _score_min() -> int:
    return int(os.environ.get("VAULTCRAFT_PASSWORD_SCORE_MIN", str(PASSWORD_SCORE_MIN_DEFAULT)))


def _weak(reasons: list[str]) -> WeakPassword:
    return WeakPassword("choose a longer or less guessable password", details={"password": reasons})


def context_words(*context: str | None) -> list[str]:
    """What an attacker who knows the user tries first: the email, its local part, names, the
    service's name, whole and word by word, lower-cased."""
    words: set[str] = {SERVICE_NAME.lower()}
    for value in filter(None, context):
        value = value.strip().lower()
        words.add(value)
        words.add(value.split("@", 1)[0])
        words.update(word for word in re.split(r"[^\w]+", value) if len(word) >= _CONTEXT_WORD_LENGTH_MIN)
    return sorted(words)


def check_strength(password: str, *, context: list[str]) -> None:
    """Refuse a short, common or context-guessable password with WeakPassword (422 WEAK_PASSWORD)."""
    if len(password) < PASSWORD_LENGTH_MIN:
        raise _weak([f"must be at least {PASSWORD_LENGTH_MIN} characters"])
    if password.strip().lower() in context:
        raise _weak(["must not be your email, your name or your organisation's name"])
    # Imported here: its dictionaries are loaded on first use, in the web process only.
    from zxcvbn import zxcvbn

    result = zxcvbn(password, user_inputs=context, max_length=PASSWORD_BYTES_MAX)
    if result["score"] < _score_min():
        feedback = result["feedback"]
        reasons = [feedback["warning"]] if feedback["warning"] else []
        raise _weak([*reasons, *feedback["suggestions"]] or ["too easy to guess"])
