"""Idempotency keys: one row per (organisation, key) with a hash of the request that first used it.

A key is kept for `Settings.idempotency_key_ttl_hours` (24 h by default, as Stripe keeps them), then
beat purges it (`purge_expired_keys`, a bounded batch at a time): after that the same key is new
again. A replay is answered only to a caller who may see the transaction the key made (the callers
in `ledger.intents.transfers` and `ledger.intents.bulk` check): keys are scoped to the organisation, not the user.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import Conflict, InvalidRequest
from models import IdempotencyKey


def key_reused() -> InvalidRequest:
    """The answer to a key that came before with another request, or that made a transaction the
    caller may not see: the same answer for both, so it tells nothing of the first request."""
    return InvalidRequest("this Idempotency-Key was used with a different request", code="IDEMPOTENCY_KEY_REUSED")


# A claimed key names its transaction through a foreign key checked at commit (deferred): the
# claim is written before the intent it names, in the same transaction.
CLAIM_NAMES_ITS_TRANSACTION = "fk_idempotency_keys_transaction_id_transactions"


def claim_outlived_its_refusal(error: BaseException) -> bool:
    """Whether `error` is a commit refused because a claimed key names no transaction: an intake
    whose rules refused the request after its key was claimed, run as a statement committed on its
    own. In a transaction the refusal is raised first and rolls the claim back; here the statement's
    commit fails instead, writing nothing, and the caller asks again in a transaction to say why."""
    diagnostic = getattr(getattr(error, "orig", None), "diag", None)
    return getattr(diagnostic, "constraint_name", None) == CLAIM_NAMES_ITS_TRANSACTION


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
    ).one_or_none()
    if existing is None:
        # Purged, past its time to live, between the claim and this read: a retry makes it anew.
        raise Conflict("this Idempotency-Key expired while the request ran; retry", code="IDEMPOTENCY_KEY_EXPIRED")
    if existing.request_hash != fingerprint:
        raise key_reused()
    return existing.transaction_id


# The oldest keys past their time to live, a bounded batch; a key a request holds locked is left to
# the next batch.
_PURGE_EXPIRED = text(
    """
    DELETE FROM idempotency_keys AS k
     USING (SELECT organization_id, key FROM idempotency_keys
             WHERE created_at < now() - CAST(:ttl AS interval)
             ORDER BY created_at
             LIMIT :limit
               FOR UPDATE SKIP LOCKED) AS expired
     WHERE k.organization_id = expired.organization_id AND k.key = expired.key
    """
)


def purge_expired_keys(session: Session, *, ttl: timedelta, limit: int) -> int:
    """Delete up to `limit` keys created more than `ttl` ago, oldest first; how many went."""
    result = session.execute(_PURGE_EXPIRED, {"ttl": ttl, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]
