"""Wallets: create, list, read, status, members, deposits and withdrawals, ledger, balance, summary."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from ledger import statements, wallets
from ledger.access import Actor, get_visible_wallet, visible_wallets
from ledger.intents import transfers
from ledger.pagination import paginate
from models import MemberRole, Wallet, WalletStatus, WalletType
from web import dry_run
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit, member_view, wallet_status, wallet_status_changed
from web.routes.transactions import (
    IDEMPOTENCY_HEADER,
    TRANSFER,
    accept_transfer,
    submit_and_enqueue,
    transaction_links,
)
from web.schemas.common import IdempotencyHeaderSchema, PageArgsSchema, page_schema
from web.schemas.transactions import TransactionSchema
from web.schemas.wallets import (
    AmountSchema,
    BalanceQuerySchema,
    BalanceSchema,
    LedgerEntrySchema,
    MemberGrantSchema,
    MemberSchema,
    SummarySchema,
    WalletCreateSchema,
    WalletFilterSchema,
    WalletPatchSchema,
    WalletSchema,
)
from web.security import authenticated, current_actor
from web.serializers import wallet_view

blp = Blueprint("wallets", __name__, url_prefix="/api/v1/wallets", description="Wallets")

WalletPageSchema = page_schema(WalletSchema, "WalletPage")
EntryPageSchema = page_schema(LedgerEntrySchema, "LedgerEntryPage")
WALLET_PATH = "/api/v1/wallets/{wallet_id}"


def wallet_links(id_expression: str) -> dict[str, Any]:
    """Links from an answer that names a wallet to every call on that wallet."""
    named = {"wallet_id": id_expression}
    return {
        "GetWallet": link("get", WALLET_PATH, "the wallet", parameters=named),
        "ChangeWalletStatus": link("patch", WALLET_PATH, "lock, unlock or close it", parameters=named),
        "GrantWalletMember": link("post", WALLET_PATH + "/members", "give a user access", parameters=named),
        "Deposit": link("post", WALLET_PATH + "/deposit", "money in", parameters=named),
        "Withdraw": link("post", WALLET_PATH + "/withdraw", "money out", parameters=named),
        "GetWalletLedger": link("get", WALLET_PATH + "/ledger", "its entries", parameters=named),
        "GetWalletBalance": link("get", WALLET_PATH + "/balance", "its balance", parameters=named),
        "CreateBalanceMonitor": link("post", WALLET_PATH + "/monitors", "watch its balance", parameters=named),
        "ListBalanceMonitors": link("get", WALLET_PATH + "/monitors", "its balance monitors", parameters=named),
    }


def _transfer_between_listed(path: str) -> Any:
    return link(
        "post",
        path,
        "move money between the first two wallets listed",
        source_wallet_id="$response.body#/items/0/id",
        destination_wallet_id="$response.body#/items/1/id",
        currency="$response.body#/items/0/currency",
    )


def _request_money_into(path: str) -> Any:
    return link(
        "post",
        path,
        "ask another user for money into this wallet",
        destination_wallet_id="$response.body#/id",
        currency="$response.body#/currency",
    )


LISTED_WALLET_LINKS = {
    **wallet_links("$response.body#/items/0/id"),
    "TransferBetweenListedWallets": _transfer_between_listed("/api/v1/transactions/transfer"),
    "WalletsTransferBetweenListedWallets": _transfer_between_listed("/api/v1/wallets/transfer"),
    "InternalMoveBetweenListedWallets": _transfer_between_listed("/api/vault-settlements/internal"),
    "HoldBetweenListedWallets": _transfer_between_listed("/api/v1/holds"),
}
CREATED_WALLET_LINKS = {
    **wallet_links("$response.body#/id"),
    "RequestMoneyIntoWallet": _request_money_into("/api/v1/p2p/requests"),
    "RequestMoneyIntoWalletSeedPath": _request_money_into("/api/vault-settlements/p2p/request"),
}


def _view(session: Any, wallet: Wallet) -> dict[str, Any]:
    return wallet_view(wallet)


@blp.route("/", methods=["POST"])
@authenticated(blp)
@blp.arguments(WalletCreateSchema)
@blp.response(201, WalletSchema)
@links(blp, (201,), CREATED_WALLET_LINKS)
def create_wallet(body: dict[str, Any]) -> dict[str, Any]:
    """A wallet owned by the caller. SYSTEM wallets only for OWNER/ADMIN."""
    with unit_of_work() as session:
        wallet = wallets.create_wallet(
            session,
            current_actor(session),
            wallet_type=WalletType(body["type"]),
            currency=body["currency"],
            name=body["name"],
        )
        audit(session, current_actor(session), "wallet.created", target=wallet, after=wallet_view(wallet))
        return wallet_view(wallet)


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.arguments(WalletFilterSchema, location="query")
@blp.response(200, WalletPageSchema)
@links(blp, (200,), LISTED_WALLET_LINKS)
def list_wallets(args: dict[str, Any]) -> dict[str, Any]:
    """Wallets the caller may see, newest first."""
    with unit_of_work() as session:
        query = visible_wallets(current_actor(session))
        if args["type"]:
            query = query.where(Wallet.type == args["type"])
        if args["status"]:
            query = query.where(Wallet.status == args["status"])
        if args["currency"]:
            query = query.where(Wallet.currency == args["currency"])
        page = paginate(
            session,
            query,
            keys=(Wallet.created_at, Wallet.id),
            kinds=(datetime, uuid.UUID),
            limit=args["limit"],
            cursor=args["cursor"],
        )
        items = [wallet_view(w) for w in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@blp.route("/summary", methods=["GET"])
@authenticated(blp)
@blp.response(200, SummarySchema)
def summary() -> dict[str, object]:
    """The organisation's totals by currency and type, and wallet counts by status."""
    with unit_of_work() as session:
        return wallets.summarize(session, current_actor(session))


@blp.route("/transfer", methods=["POST"])
@authenticated(blp)
@blp.arguments(IDEMPOTENCY_HEADER, location="headers", as_kwargs=True)
@blp.arguments(TRANSFER)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def transfer(body: dict[str, Any], idempotency_key: str | None) -> Any:
    """Same as POST /api/v1/transactions/transfer."""
    return accept_transfer(body, idempotency_key)


@blp.route("/<uuid:wallet_id>", methods=["GET"])
@authenticated(blp)
@blp.response(200, WalletSchema)
def get_wallet(wallet_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        return _view(session, get_visible_wallet(session, current_actor(session), wallet_id))


@blp.route("/<uuid:wallet_id>", methods=["PATCH"])
@authenticated(blp)
@blp.arguments(WalletPatchSchema)
@blp.response(200, WalletSchema)
def patch_wallet(body: dict[str, Any], wallet_id: uuid.UUID) -> dict[str, Any]:
    """Lock, unlock or close. CLOSED only at zero balance; CLOSED is final."""
    with unit_of_work() as session:
        before = wallet_status(session, wallet_id)
        wallet = wallets.change_status(session, current_actor(session), wallet_id, WalletStatus(body["status"]))
        wallet_status_changed(session, current_actor(session), wallet, before)
        return _view(session, wallet)


@blp.route("/<uuid:wallet_id>/members", methods=["POST"])
@authenticated(blp)
@blp.arguments(MemberGrantSchema)
@blp.response(201, MemberSchema)
def grant_member(body: dict[str, Any], wallet_id: uuid.UUID) -> Any:
    """Give a user of the organisation CONTRIBUTOR (may debit) or VIEWER access."""
    with unit_of_work() as session:
        member = wallets.grant_member(
            session, current_actor(session), wallet_id, user_id=body["user_id"], role=MemberRole(body["role"])
        )
        audit(
            session,
            current_actor(session),
            "wallet.member_granted",
            target=("wallet", wallet_id),
            after=member_view(member),
        )
        return member


def _treasury_move(
    submitter: Callable[..., transfers.Submitted],
    wallet_id: uuid.UUID,
    body: dict[str, Any],
    idempotency_key: str | None,
) -> Any:
    """A deposit or a withdrawal: the same intake, dry run and enqueue; only the ledger function differs."""

    def submit(session: Session, actor: Actor) -> transfers.Submitted:
        return submitter(
            session, actor, wallet_id, body["amount"], idempotency_key=idempotency_key, description=body["description"]
        )

    if dry_run.requested():
        return dry_run.answer(lambda session, actor: submit(session, actor).transaction.id)
    return submit_and_enqueue(submit)


@blp.route("/<uuid:wallet_id>/deposit", methods=["POST"])
@authenticated(blp)
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(AmountSchema)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def deposit(body: dict[str, Any], wallet_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """OWNER/ADMIN: money in, from the organisation's treasury for the wallet's currency."""
    return _treasury_move(transfers.submit_deposit, wallet_id, body, idempotency_key)


@blp.route("/<uuid:wallet_id>/withdraw", methods=["POST"])
@authenticated(blp)
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(AmountSchema)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def withdraw(body: dict[str, Any], wallet_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """Money out, to the organisation's treasury. The wallet's owner or a CONTRIBUTOR."""
    return _treasury_move(transfers.submit_withdrawal, wallet_id, body, idempotency_key)


@blp.route("/<uuid:wallet_id>/ledger", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, EntryPageSchema)
def wallet_ledger(args: dict[str, Any], wallet_id: uuid.UUID) -> dict[str, Any]:
    """The wallet's entries, newest first, each with its balance_after and wallet_version."""
    with unit_of_work() as session:
        page = statements.wallet_entries(
            session, current_actor(session), wallet_id, limit=args["limit"], cursor=args["cursor"]
        )
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<uuid:wallet_id>/balance", methods=["GET"])
@authenticated(blp)
@blp.arguments(BalanceQuerySchema, location="query")
@blp.response(200, BalanceSchema)
def wallet_balance(args: dict[str, Any], wallet_id: uuid.UUID) -> dict[str, Any]:
    """The balance now, or as it stood at `as_of`."""
    with unit_of_work() as session:
        actor = current_actor(session)
        wallet = get_visible_wallet(session, actor, wallet_id)
        instant = args["as_of"] or datetime.now(UTC)
        if args["as_of"] is None:
            balance, version = wallet.balance, wallet.version
        else:
            balance, version = statements.balance_as_of(session, actor, wallet_id, instant)
    return {
        "wallet_id": wallet_id,
        "currency": wallet.currency,
        "balance": balance,
        "version": version,
        "as_of": instant,
    }
