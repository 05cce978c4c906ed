"""Holds (two-phase transfers): accept (202), read, wait, list, capture (202), void (202)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import url_for
from sqlalchemy.orm import Session

from ledger.intents import holds
from ledger.intents.holds import HoldFilters, HoldRequest
from ledger.settlement import preview
from models import Hold, HoldStatus
from tasks.settlement import settle_soon
from web import dry_run
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit, intent_accepted
from web.routes import transactions as transaction_routes
from web.schemas.common import IdempotencyHeaderSchema, page_schema
from web.schemas.holds import CaptureSchema, HoldCreateSchema, HoldFilterSchema, HoldSchema
from web.schemas.transactions import TransactionSchema, WaitQuerySchema
from web.security import authenticated, current_actor
from web.waiting import read_until_final

blp = Blueprint("holds", __name__, url_prefix="/api/v1/holds", description="Holds: reserve now, capture later")

HoldPageSchema = page_schema(HoldSchema, "HoldPage")
HOLD_PATH = "/api/v1/holds/{hold_id}"


def hold_links(id_expression: str) -> dict[str, Any]:
    named = {"hold_id": id_expression}
    return {
        "GetHold": link("get", HOLD_PATH, "the hold", parameters=named),
        "CaptureHold": link("post", HOLD_PATH + "/capture", "capture it", parameters=named),
        "VoidHold": link("post", HOLD_PATH + "/void", "release it", parameters=named),
    }


def hold_view(hold: Hold, captures: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "id": hold.id,
        "organization_id": hold.organization_id,
        "created_by": hold.created_by,
        "status": hold.status,
        "amount": hold.amount,
        "captured_amount": hold.captured_amount,
        "remaining_amount": hold.remaining_amount,
        "currency": hold.currency,
        "source_wallet_id": hold.source_wallet_id,
        "destination_wallet_id": hold.destination_wallet_id,
        "expires_in": hold.expires_in,
        "expires_at": hold.expires_at,
        "captures": captures,
        "failure_reason": hold.failure_reason,
        "description": hold.description,
        "metadata": hold.metadata_,
        "created_at": hold.created_at,
        "ended_at": hold.ended_at,
    }


def _views(session: Session, found: list[Hold]) -> list[dict[str, Any]]:
    captures = holds.capture_ids(session, [h.id for h in found])
    return [hold_view(h, captures[h.id]) for h in found]


IDEMPOTENCY_HEADER = IdempotencyHeaderSchema()


@blp.route("", methods=["POST"])
@authenticated(blp)
@blp.arguments(IDEMPOTENCY_HEADER, location="headers", as_kwargs=True)
@blp.arguments(HoldCreateSchema)
@blp.response(202, HoldSchema)
@dry_run.documented(blp, replay=HoldSchema)
@links(blp, (202, 200), hold_links("$response.body#/id"))
def create_hold(body: dict[str, Any], idempotency_key: str | None) -> Any:
    """Accept a hold: a worker reserves the amount on the source wallet (HELD) or fails it.
    With `?dry_run=true`: would_status HELD or FAILED, the source's held amount up."""
    request = HoldRequest(
        source_wallet_id=body["source_wallet_id"],
        destination_wallet_id=body["destination_wallet_id"],
        amount=body["amount"],
        currency=body["currency"],
        expires_in=body["expires_in"],
        description=body["description"],
        metadata=body["metadata"],
    )
    if dry_run.requested():
        return dry_run.answer(
            lambda session, actor: holds.submit_hold(session, actor, request, idempotency_key=idempotency_key).hold.id
        )
    with unit_of_work() as session:
        actor = current_actor(session)
        accepted = holds.submit_hold(session, actor, request, idempotency_key=idempotency_key)
        intent_accepted(session, actor, accepted.submitted)
        view = _views(session, [accepted.hold])[0]
    if accepted.submitted.created:
        settle_soon([accepted.hold.id])
    location = url_for("holds.get_hold", hold_id=accepted.hold.id)
    return view, 202 if accepted.submitted.created else 200, {"Location": location}


@blp.route("", methods=["GET"])
@authenticated(blp)
@blp.arguments(HoldFilterSchema, location="query")
@blp.response(200, HoldPageSchema)
@links(blp, (200,), hold_links("$response.body#/items/0/id"))
def list_holds(args: dict[str, Any]) -> dict[str, Any]:
    """Holds the caller may see, newest first."""
    filters = HoldFilters(status=HoldStatus(args["status"]) if args["status"] else None, wallet_id=args["wallet_id"])
    with unit_of_work() as session:
        page = holds.list_holds(session, current_actor(session), filters, limit=args["limit"], cursor=args["cursor"])
        return {"items": _views(session, page.items), "next_cursor": page.next_cursor}


def _read(hold_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        return _views(session, [holds.get_visible_hold(session, current_actor(session), hold_id)])[0]


@blp.route("/<uuid:hold_id>", methods=["GET"])
@authenticated(blp)
@blp.arguments(WaitQuerySchema, location="query")
@blp.response(200, HoldSchema)
def get_hold(args: dict[str, Any], hold_id: uuid.UUID) -> dict[str, Any]:
    """One hold; `?wait=N` holds the answer until it leaves PENDING or N seconds pass."""
    return read_until_final(lambda: _read(hold_id), lambda view: view["status"] != HoldStatus.PENDING, args["wait"])


@blp.route("/<uuid:hold_id>/capture", methods=["POST"])
@authenticated(blp)
@blp.arguments(IDEMPOTENCY_HEADER, location="headers", as_kwargs=True)
@blp.arguments(CaptureSchema)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_routes.transaction_links(blp, (202, 200))
def capture_hold(body: dict[str, Any], hold_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """Capture part (`amount`) or all that remains of a HELD hold: a CAPTURE transaction, settled by a worker.
    With `?dry_run=true`: would_status COMPLETED or FAILED, the balances moved and the held amount down."""

    def submit(session: Session, actor: Any) -> Any:
        return holds.submit_capture(
            session, actor, hold_id, amount=body["amount"], final=body["final"], idempotency_key=idempotency_key
        )

    if dry_run.requested():
        return dry_run.answer(lambda session, actor: submit(session, actor).transaction.id)
    return transaction_routes.submit_and_enqueue(submit)


@blp.route("/<uuid:hold_id>/void", methods=["POST"])
@authenticated(blp)
@blp.response(202, HoldSchema)
@dry_run.documented(blp)
@links(blp, (202,), hold_links("$response.body#/id"))
def void_hold(hold_id: uuid.UUID) -> Any:
    """Release what is not captured; the hold ends VOIDED. Voiding a VOIDED hold answers it again.
    With `?dry_run=true`: would_status COMPLETED (the void is immediate), the release shown."""
    if dry_run.requested():
        return dry_run.answer(lambda session, actor: holds.void(session, actor, hold_id).id, preview.predict_released)
    with unit_of_work() as session:
        actor = current_actor(session)
        hold = holds.void(session, actor, hold_id)
        audit(session, actor, "hold.voided", target=hold, after={"status": str(hold.status)})
        return _views(session, [hold])[0], 202
