"""Seed-compatible paths under /api/vault-settlements/, each the twin of an /api/v1 call."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from marshmallow import fields
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.access import Actor, can_debit, get_visible_wallet, visible_wallets
from ledger.errors import Forbidden
from ledger.intents import transfers
from ledger.intents.transfers import Submitted, TransferRequest
from ledger.pagination import paginate
from models import LedgerEntry, Wallet
from web import dry_run
from web.api import Blueprint, links
from web.db import unit_of_work
from web.routes import p2p as p2p_routes
from web.routes.transactions import submit_and_enqueue, transaction_links
from web.schemas.common import IdempotencyHeaderSchema, PageArgsSchema, page_schema
from web.schemas.p2p import P2PRequestCreateSchema, P2PRequestSchema, P2PSettledSchema, P2PSettleSchema
from web.schemas.transactions import TransactionSchema, TransferSchema
from web.schemas.wallets import LedgerEntrySchema
from web.security import authenticated, current_actor

blp = Blueprint(
    "vault_settlements",
    __name__,
    url_prefix="/api/vault-settlements",
    description="Seed-compatible paths; each behaves as its /api/v1 twin",
)

EntryPageSchema = page_schema(LedgerEntrySchema, "VaultSettlementsLedgerPage")


class LedgerArgsSchema(PageArgsSchema):
    wallet_id = fields.UUID(load_default=None)


def _internal_transfer(
    session: Session, actor: Actor, request: TransferRequest, idempotency_key: str | None
) -> Submitted:
    """A move between two of the caller's own wallets (owned, or held as CONTRIBUTOR)."""
    destination = get_visible_wallet(session, actor, request.destination_wallet_id)
    if not can_debit(session, actor, destination):
        raise Forbidden("an internal move is between two of your own wallets", code="NOT_OWN_WALLET")
    return transfers.submit_transfer(session, actor, request, idempotency_key=idempotency_key)


@blp.route("/internal", methods=["POST"])
@authenticated(blp)
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(TransferSchema)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def internal(body: dict[str, Any], idempotency_key: str | None) -> Any:
    """POST /api/v1/transactions/transfer between two of the caller's own wallets."""
    request = TransferRequest(
        source_wallet_id=body["source_wallet_id"],
        destination_wallet_id=body["destination_wallet_id"],
        amount=body["amount"],
        currency=body["currency"],
        description=body["description"],
        metadata=body["metadata"],
    )
    if dry_run.requested():
        return dry_run.answer(
            lambda session, actor: _internal_transfer(session, actor, request, idempotency_key).transaction.id
        )
    return submit_and_enqueue(lambda session, actor: _internal_transfer(session, actor, request, idempotency_key))


@blp.route("/ledger", methods=["GET"])
@authenticated(blp)
@blp.arguments(LedgerArgsSchema, location="query")
@blp.response(200, EntryPageSchema)
def ledger(args: dict[str, Any]) -> dict[str, Any]:
    """The caller's ledger entries (every wallet they may see, or one with `wallet_id`), newest first."""
    with unit_of_work() as session:
        actor = current_actor(session)
        wallet_ids = visible_wallets(actor).with_only_columns(Wallet.id)
        if args["wallet_id"] is not None:
            wallet_ids = wallet_ids.where(Wallet.id == args["wallet_id"])
        page = paginate(
            session,
            select(LedgerEntry).where(LedgerEntry.wallet_id.in_(wallet_ids)),
            keys=(LedgerEntry.created_at, LedgerEntry.id),
            kinds=(datetime, uuid.UUID),
            limit=args["limit"],
            cursor=args["cursor"],
        )
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/p2p/request", methods=["POST"])
@authenticated(blp)
@blp.arguments(P2PRequestCreateSchema)
@blp.response(201, P2PRequestSchema)
@links(blp, (201,), p2p_routes.request_links("$response.body#/id"))
def p2p_request(body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/v1/p2p/requests."""
    return p2p_routes.create_request(body)


@blp.route("/p2p/settle/<uuid:request_id>", methods=["POST"])
@authenticated(blp)
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(P2PSettleSchema)
@blp.response(202, P2PSettledSchema)
@dry_run.documented(blp, replay=P2PSettledSchema)
@transaction_links(blp, (202, 200), "$response.body#/transaction/id")
def p2p_settle(body: dict[str, Any], request_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """POST /api/v1/p2p/requests/{id}/settle."""
    return p2p_routes.settle_request(request_id, body, idempotency_key)
