"""Bulk intake: many transfer intents in one request, one commit, one publish per settle batch.

Each new intent is audited as `transfer.created`, as a single transfer is, in the same commit.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_smorest import Blueprint
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from ledger import audit as audit_trail
from ledger import bulk
from ledger.access import Actor
from ledger.bulk import AcceptedIntent, BulkItem, ItemOutcome
from ledger.intents import TransferRequest
from ops.metrics import note_accepted
from settings import get_settings
from tasks.settlement import enqueue_settlement
from web.db import unit_of_work
from web.errors import DOMAIN_STATUS
from web.request_context import origin
from web.schemas.bulk import BulkResultSchema, BulkTransferItemSchema, BulkTransferSchema
from web.security import authenticated, current_actor

blp = Blueprint("bulk", __name__, url_prefix="/api/v1/transactions", description="Bulk transfer intake")

ITEM_SCHEMA = BulkTransferItemSchema()


def _parse(raw: Any) -> BulkItem | dict[str, Any]:
    """The item as a domain request, or the error body that rejects it alone."""
    if not isinstance(raw, dict):
        return {"code": "VALIDATION_ERROR", "message": "each transfer must be a JSON object", "details": None}
    try:
        item = ITEM_SCHEMA.load(raw)
    except ValidationError as error:
        return {"code": "VALIDATION_ERROR", "message": "transfer failed validation", "details": error.messages}
    request = TransferRequest(
        source_wallet_id=item["source_wallet_id"],
        destination_wallet_id=item["destination_wallet_id"],
        amount=item["amount"],
        currency=item["currency"],
        description=item["description"],
        metadata=item["metadata"],
    )
    return BulkItem(request=request, idempotency_key=item["idempotency_key"])


def _intent_body(intent: AcceptedIntent) -> dict[str, Any]:
    return {
        "id": str(intent.id),
        "type": intent.type,
        "status": intent.status,
        "failure_reason": intent.failure_reason,
        "source_wallet_id": str(intent.source_wallet_id),
        "destination_wallet_id": str(intent.destination_wallet_id),
        "amount": intent.amount,
        "currency": intent.currency,
        "idempotency_key": intent.idempotency_key,
        "created_at": intent.created_at.isoformat(),
        "completed_at": intent.completed_at.isoformat() if intent.completed_at else None,
    }


def _item_result(index: int, outcome: ItemOutcome) -> dict[str, Any]:
    if outcome.error is not None:
        status = next(s for kind, s in DOMAIN_STATUS.items() if isinstance(outcome.error, kind))
        error = {"code": outcome.error.code, "message": outcome.error.message, "details": outcome.error.details}
        return {"index": index, "status_code": status, "transaction": None, "error": error}
    assert outcome.intent is not None
    status = 202 if outcome.created else 200
    return {"index": index, "status_code": status, "transaction": _intent_body(outcome.intent), "error": None}


def _audit_accepted(session: Session, actor: Actor, items: list[BulkItem | None], outcomes: list[ItemOutcome]) -> None:
    """One `transfer.created` row per new intent (a replay records nothing), and count it once committed."""
    changes = []
    for item, outcome in zip(items, outcomes, strict=True):
        if item is None or outcome.intent is None or not outcome.created:
            continue
        after = {
            **_intent_body(outcome.intent),
            "organization_id": actor.organization_id,
            "description": item.request.description,
            "metadata": item.request.metadata,
        }
        changes.append((("transaction", outcome.intent.id), after))
        note_accepted(session, outcome.intent.type)
    audit_trail.record_many(session, actor, "transfer.created", changes, origin=origin())


def _publish(outcomes: list[ItemOutcome]) -> None:
    """After commit: one message per settle batch, not one per intent."""
    created = [o.intent.id for o in outcomes if o.created and o.intent is not None]
    batch = get_settings().settle_batch_size_max
    for start in range(0, len(created), batch):
        enqueue_settlement(created[start : start + batch])


@blp.route("/batch", methods=["POST"])
@authenticated(blp)
@blp.arguments(BulkTransferSchema)
@blp.response(202, BulkResultSchema)
def create_transfers(body: dict[str, Any]) -> Response:
    """Accept up to 1,000 transfer intents at once, each with its own `idempotency_key`.

    Always 202 with one result per item, in order: `status_code` 202 (new PENDING intent), 200
    (replay of an earlier request with that key) or the 4xx a single transfer would get, with its
    error. A rejected item does not affect the others; the accepted ones are committed together.
    """
    parsed = [_parse(raw) for raw in body["transfers"]]
    items = [p if isinstance(p, BulkItem) else None for p in parsed]
    with unit_of_work() as session:
        actor = current_actor(session)
        outcomes = bulk.submit_transfers(session, actor, items)
        _audit_accepted(session, actor, items, outcomes)
    _publish(outcomes)
    results: list[dict[str, Any]] = []
    for index, (p, outcome) in enumerate(zip(parsed, outcomes, strict=True)):
        if isinstance(p, dict):
            results.append({"index": index, "status_code": 422, "transaction": None, "error": p})
        else:
            results.append(_item_result(index, outcome))
    codes = [int(r["status_code"]) for r in results]
    summary = {
        "accepted": codes.count(202),
        "replayed": codes.count(200),
        "rejected": len(codes) - codes.count(202) - codes.count(200),
    }
    response = jsonify({**summary, "items": results})
    response.status_code = 202
    return response
