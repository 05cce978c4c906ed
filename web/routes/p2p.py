"""Peer-to-peer requests: ask, list, settle (payer), decline (payer), cancel (payee).

Each action is audited in its own unit of work: `p2p_request.created`, `p2p_request.settled` (the payer
accepted it for settlement; its transfer intent is audited as `transfer.created` too),
`p2p_request.declined`, `p2p_request.cancelled`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.intents import p2p
from ledger.intents.p2p import NewRequest, Party, Settled
from ledger.intents.transfers import Submitted
from models import P2PRequest, P2PStatus
from web import dry_run
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit, intent_accepted
from web.routes import transactions as transaction_routes
from web.schemas.common import IdempotencyHeaderSchema, page_schema
from web.schemas.p2p import (
    P2PListArgsSchema,
    P2PRequestCreateSchema,
    P2PRequestSchema,
    P2PSettledSchema,
    P2PSettleSchema,
)
from web.schemas.transactions import WaitQuerySchema
from web.security import authenticated, current_actor
from web.waiting import read_until_final

blp = Blueprint("p2p", __name__, url_prefix="/api/v1/p2p", description="Peer-to-peer requests")
REQUEST_PATH = "/api/v1/p2p/requests/{request_id}"


def request_links(id_expression: str) -> dict[str, Any]:
    """Links from an answer that names a P2P request to every call on it."""
    named = {"request_id": id_expression}
    return {
        "GetP2PRequest": link("get", REQUEST_PATH, "the request", parameters=named),
        "SettleP2PRequest": link("post", REQUEST_PATH + "/settle", "the payer pays it", parameters=named),
        "DeclineP2PRequest": link("post", REQUEST_PATH + "/decline", "the payer declines it", parameters=named),
        "CancelP2PRequest": link("post", REQUEST_PATH + "/cancel", "the payee withdraws it", parameters=named),
        "SettleP2PRequestSeedPath": link(
            "post", "/api/vault-settlements/p2p/settle/{request_id}", "the payer pays it", parameters=named
        ),
    }


P2PRequestPageSchema = page_schema(P2PRequestSchema, "P2PRequestPage")


def request_views(session: Session, requests: list[P2PRequest]) -> list[dict[str, Any]]:
    emails = p2p.party_emails(session, requests)
    return [
        {
            "id": r.id,
            "status": r.status,
            "payee_id": r.payee_id,
            "payee_email": emails.get(r.payee_id),
            "payee_organization_id": r.payee_organization_id,
            "payer_id": r.payer_id if p2p.payer_shown(r) else None,
            "payer_email": r.payer_email or (emails.get(r.payer_id) if r.payer_id else None),
            "payer_organization_id": r.payer_organization_id if p2p.payer_shown(r) else None,
            "amount": r.amount,
            "currency": r.currency,
            "destination_wallet_id": r.destination_wallet_id,
            "note": r.note,
            "transaction_id": r.transaction_id,
            "failure_reason": r.failure_reason,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "resolved_at": r.resolved_at,
        }
        for r in requests
    ]


def _audit(session: Session, actor: Actor, action: str, view: dict[str, Any], before: str | None) -> None:
    after = {"status": view["status"], "amount": view["amount"], "currency": view["currency"]}
    after.update(
        {k: view[k] for k in ("payer_id", "payer_email", "payee_id", "destination_wallet_id", "transaction_id")}
    )
    audit(
        session,
        actor,
        action,
        target=("p2p_request", view["id"]),
        before={"status": before} if before else None,
        after=after,
    )


def create_request(body: dict[str, Any]) -> dict[str, Any]:
    new = NewRequest(
        payer_email=body["payer_email"],
        amount=body["amount"],
        currency=body["currency"],
        destination_wallet_id=body["destination_wallet_id"],
        note=body["note"],
    )
    with unit_of_work() as session:
        actor = current_actor(session)
        view = request_views(session, [p2p.create_request(session, actor, new)])[0]
        _audit(session, actor, "p2p_request.created", view, None)
        return view


def settle_request(request_id: uuid.UUID, body: dict[str, Any], idempotency_key: str | None) -> Any:
    """Write the transfer intent with the request's new state, commit, then publish it."""
    if dry_run.requested():
        return dry_run.answer(
            lambda session, actor: (
                p2p.settle(
                    session,
                    actor,
                    request_id,
                    source_wallet_id=body["source_wallet_id"],
                    idempotency_key=idempotency_key,
                ).transaction.id
            )
        )
    with unit_of_work() as session:
        actor = current_actor(session)
        settled: Settled = p2p.settle(
            session,
            actor,
            request_id,
            source_wallet_id=body["source_wallet_id"],
            idempotency_key=idempotency_key,
        )
        request_view = request_views(session, [settled.request])[0]
        view = {"request": request_view, "transaction": settled.transaction}
        if settled.created:  # a repeated settle changed nothing and records nothing
            intent_accepted(session, actor, Submitted(settled.transaction, created=True))
            _audit(session, actor, "p2p_request.settled", request_view, str(P2PStatus.REQUESTED))
    if settled.created:
        # Looked up on the module so a test can stand in for the broker in one place.
        transaction_routes.settle_soon([settled.transaction.id])
    return view, 202 if settled.created else 200


@blp.route("/requests", methods=["POST"])
@authenticated(blp)
@blp.arguments(P2PRequestCreateSchema)
@blp.response(201, P2PRequestSchema)
@links(blp, (201,), request_links("$response.body#/id"))
def create(body: dict[str, Any]) -> dict[str, Any]:
    """The caller (payee) asks another user, in any organisation, for money into their own wallet."""
    return create_request(body)


@blp.route("/requests", methods=["GET"])
@authenticated(blp)
@blp.arguments(P2PListArgsSchema, location="query")
@blp.response(200, P2PRequestPageSchema)
@links(blp, (200,), request_links("$response.body#/items/0/id"))
def list_requests(args: dict[str, Any]) -> dict[str, Any]:
    """Requests the caller is party to, newest first; `role=payer|payee` narrows to one side."""
    with unit_of_work() as session:
        page = p2p.list_requests(
            session,
            current_actor(session),
            role=Party(args["role"]) if args["role"] else None,
            status=P2PStatus(args["status"]) if args["status"] else None,
            limit=args["limit"],
            cursor=args["cursor"],
        )
        return {"items": request_views(session, page.items), "next_cursor": page.next_cursor}


def _read(request_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        return request_views(session, [p2p.get_request(session, current_actor(session), request_id)])[0]


@blp.route("/requests/<uuid:request_id>", methods=["GET"])
@authenticated(blp)
@blp.arguments(WaitQuerySchema, location="query")
@blp.response(200, P2PRequestSchema)
def get_request(args: dict[str, Any], request_id: uuid.UUID) -> dict[str, Any]:
    """One request; `?wait=N` holds the answer until it is final (SETTLED, FAILED, DECLINED,
    CANCELLED) or N seconds pass, as for transactions."""
    return read_until_final(lambda: _read(request_id), lambda view: P2PStatus(view["status"]).is_final, args["wait"])


@blp.route("/requests/<uuid:request_id>/settle", methods=["POST"])
@authenticated(blp)
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(P2PSettleSchema)
@blp.response(202, P2PSettledSchema)
@dry_run.documented(blp, replay=P2PSettledSchema)
@transaction_routes.transaction_links(blp, (202, 200), "$response.body#/transaction/id")
def settle(body: dict[str, Any], request_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """The payer pays: one transfer intent; the request becomes SETTLED or FAILED with it."""
    return settle_request(request_id, body, idempotency_key)


def _end_request(request_id: uuid.UUID, end: Any, action: str) -> dict[str, Any]:
    """Move a REQUESTED request to a final state through `end`, and audit it, in one transaction."""
    with unit_of_work() as session:
        actor = current_actor(session)
        view = request_views(session, [end(session, actor, request_id)])[0]
        _audit(session, actor, action, view, str(P2PStatus.REQUESTED))
        return view


@blp.route("/requests/<uuid:request_id>/decline", methods=["POST"])
@authenticated(blp)
@blp.response(200, P2PRequestSchema)
def decline(request_id: uuid.UUID) -> dict[str, Any]:
    """The payer refuses a REQUESTED request."""
    return _end_request(request_id, p2p.decline, "p2p_request.declined")


@blp.route("/requests/<uuid:request_id>/cancel", methods=["POST"])
@authenticated(blp)
@blp.response(200, P2PRequestSchema)
def cancel(request_id: uuid.UUID) -> dict[str, Any]:
    """The payee withdraws a REQUESTED request."""
    return _end_request(request_id, p2p.cancel, "p2p_request.cancelled")
