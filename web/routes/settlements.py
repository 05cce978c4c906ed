"""Cross-organisation settlement batches: run (operator), list and read (operator, OWNER/ADMIN)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.clearing import batches as settlement_batches
from ledger.errors import Forbidden
from models import BatchTrigger, SettlementBatch, SettlementLeg
from tasks.settlement_batches import run_settlement_batch
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import origin
from web.schemas.common import page_schema
from web.schemas.settlements import SettlementBatchSchema, SettlementListArgsSchema, SettlementRunSchema
from web.security import authenticated, current_actor

blp = Blueprint("settlements", __name__, url_prefix="/api/v1/settlements", description="Settlement batches")

SettlementBatchPageSchema = page_schema(SettlementBatchSchema, "SettlementBatchPage")
BATCH_PATH = "/api/v1/settlements/{batch_id}"


def leg_view(leg: SettlementLeg) -> dict[str, Any]:
    return {
        "id": leg.id,
        "organization_id": leg.organization_id,
        "currency": leg.currency,
        "sent_amount": leg.sent_amount,
        "received_amount": leg.received_amount,
        "net_position": leg.net_position,
        "direction": leg.direction,
        "amount": abs(leg.net_position),
        "transfer_count": leg.transfer_count,
        "treasury_wallet_id": leg.treasury_wallet_id,
        "clearing_wallet_id": leg.clearing_wallet_id,
        "transaction_id": leg.transaction_id,
    }


def batch_views(session: Session, actor: Actor, batches: list[SettlementBatch]) -> list[dict[str, Any]]:
    legs = settlement_batches.visible_legs(session, actor, [b.id for b in batches])
    return [
        {
            "id": b.id,
            "status": b.status,
            "trigger": b.trigger,
            "window_start": b.window_start,
            "cut_off": b.cut_off,
            **settlement_batches.visible_summary(actor, b, legs[b.id]),
            "legs": [leg_view(leg) for leg in legs[b.id]],
            "skipped": settlement_batches.visible_skips(actor, b),
            "created_at": b.created_at,
        }
        for b in batches
    ]


@blp.route("/run", methods=["POST"])
@authenticated(blp)
@blp.arguments(SettlementRunSchema)
@blp.response(201, SettlementBatchSchema)
@blp.alt_response(200, schema=SettlementBatchSchema, description="That cut-off was already settled: the same batch")
@links(
    blp,
    (201, 200),
    {"GetSettlementBatch": link("get", BATCH_PATH, "the batch", parameters={"batch_id": "$response.body#/id"})},
)
def run(body: dict[str, Any]) -> Any:
    """Operator only: settle now every cross-organisation transfer completed before the cut-off."""
    with unit_of_work() as session:
        actor = current_actor(session)
    if not actor.is_operator:
        raise Forbidden("only a platform operator runs settlement", code="OPERATOR_REQUIRED")
    batch, created = run_settlement_batch(BatchTrigger.OPERATOR, actor=actor, cut_off=body["cut_off"], origin=origin())
    with unit_of_work() as session:
        return batch_views(session, actor, [batch])[0], 201 if created else 200


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.arguments(SettlementListArgsSchema, location="query")
@blp.response(200, SettlementBatchPageSchema)
@links(
    blp,
    (200,),
    {
        "GetSettlementBatch": link(
            "get", BATCH_PATH, "the newest batch", parameters={"batch_id": "$response.body#/items/0/id"}
        )
    },
)
def list_batches(args: dict[str, Any]) -> dict[str, Any]:
    """Batches newest first: every batch for an operator, those involving your organisation for OWNER/ADMIN."""
    with unit_of_work() as session:
        actor = current_actor(session)
        page = settlement_batches.list_batches(session, actor, limit=args["limit"], cursor=args["cursor"])
        return {"items": batch_views(session, actor, page.items), "next_cursor": page.next_cursor}


@blp.route("/<uuid:batch_id>", methods=["GET"])
@authenticated(blp)
@blp.response(200, SettlementBatchSchema)
def get_batch(batch_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        actor = current_actor(session)
        return batch_views(session, actor, [settlement_batches.get_batch(session, actor, batch_id)])[0]
