"""Idempotency keys: one row per (organisation, key) with a hash of the request that first used it."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import InvalidRequest
from models import IdempotencyKey


def request_hash(operation: str, body: dict[str, Any]) -> str:
    """A stable fingerprint of what was asked: the operation and its canonical JSON body."""
    canonical = json.dumps({"operation": operation, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_key(
    session: Session, organization_id: uuid.UUID, key: str, fingerprint: str, transaction_id: uuid.UUID
) -> uuid.UUID | None:
    """Claim `key` for `transaction_id`; if it was claimed before, return that transaction's id.

    A concurrent claim of the same key blocks on the unique index until the first commits, then
    sees its row, so ten simultaneous requests produce one transaction.
    Raises IDEMPOTENCY_KEY_REUSED when the key came before with a different request.
    """
    claimed = session.execute(
        insert(IdempotencyKey)
        .values(organization_id=organization_id, key=key, request_hash=fingerprint, transaction_id=transaction_id)
        .on_conflict_do_nothing(index_elements=["organization_id", "key"])
        .returning(IdempotencyKey.key)
    ).scalar_one_or_none()
    if claimed is not None:
        return None
    return earlier_claim(session, organization_id, key, fingerprint)


def earlier_claim(session: Session, organization_id: uuid.UUID, key: str, fingerprint: str) -> uuid.UUID:
    """The transaction a key already claimed names, for a claim that found the key taken.

    Read in a statement of its own, after the claim: a claim that waited for a concurrent one to
    commit could not see that one's row in its own snapshot.
    Raises IDEMPOTENCY_KEY_REUSED when the key came before with a different request.
    """
    existing = session.execute(
        select(IdempotencyKey.request_hash, IdempotencyKey.transaction_id).where(
            IdempotencyKey.organization_id == organization_id, IdempotencyKey.key == key
        )
    ).one()
    if existing.request_hash != fingerprint:
        raise InvalidRequest(
            "this Idempotency-Key was used with a different request",
            code="IDEMPOTENCY_KEY_REUSED",
        )
    return existing.transaction_id
