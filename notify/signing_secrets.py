"""Signing secrets: generated here, stored only encrypted (Fernet, keys from settings).

A secret is "whsec_" + base64 of 24 random bytes, the Standard Webhooks form every library reads.
The key (`settings.webhook_secrets_key`: comma-separated Fernet keys, the first encrypts, all decrypt)
lives in the environment or var/, never in the database, so a dump alone reveals no secret. To
rotate the key, put a new one first and keep the old after it.
"""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@lru_cache(maxsize=4)
def _cipher(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def encrypt(secret: str, keys: str) -> bytes:
    return _cipher(keys).encrypt(secret.encode())


def decrypt(token: bytes, keys: str) -> str:
    return _cipher(keys).decrypt(bytes(token)).decode()
