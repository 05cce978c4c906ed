"""Transfer intents: accept (202), read, wait, list, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from flask import url_for
from sqlalchemy.exc import IntegrityError

from ledger.idempotency import claim_outlived_its_refusal
from ledger.intents import cancelling, refunds, review, transfers
from ledger.intents.transfers import AcceptedTransfer, PendingTransfer, Submitted, TransactionFilters, TransferRequest
from models import Transaction, TransactionStatus, TransactionType
from tasks.settlement import settle_soon
from web import dry_run
from web.api import Blueprint, link, links
from web.db import one_statement, unit_of_work
from web.request_context import audit, intent_accepted, origin, transaction_cancelled
from web.schemas.common import IdempotencyHeaderSchema, page_schema
from web.schemas.fraud import ReviewDecisionSchema
from web.schemas.transactions import (
    RefundSchema,
    TransactionFilterSchema,
    TransactionSchema,
    TransferSchema,
    WaitQuerySchema,
)
from web.schemas.wallets import LedgerEntrySchema
from web.security import authenticated, current_actor, current_user_id
from web.waiting import read_until_final

blp = Blueprint("transactions", __name__, url_prefix="/api/v1/transactions", description="Transfer intents")

TransactionPageSchema = page_schema(TransactionSchema, "TransactionPage")
EntryListSchema = page_schema(LedgerEntrySchema, "TransactionEntries")
TRANSACTION_PATH = "/api/v1/transactions/{transaction_id}"


def transaction_links(blp: Blueprint, statuses: tuple[int, ...], id_expression: str = "$response.body#/id") -> Any:
    """Links from an answer that names a transaction to what can be done with it."""
    named = {"transaction_id": id_expression}
    return links(
        blp,
        statuses,
        {
            "GetTransaction": link("get", TRANSACTION_PATH, "the transaction", parameters=named),
            "GetTransactionLedger": link("get", TRANSACTION_PATH + "/ledger", "its entries", parameters=named),
            "CancelTransaction": link("post", TRANSACTION_PATH + "/cancel", "cancel it", parameters=named),
            "RefundTransaction": link("post", TRANSACTION_PATH + "/refund", "refund it", parameters=named),
            "ReviewTransaction": link("post", TRANSACTION_PATH + "/review", "decide its review", parameters=named),
        },
    )


Answer = tuple[Transaction | PendingTransfer, int, dict[str, str]]


def accepted(transaction: Transaction | PendingTransfer, created: bool) -> Answer:
    """202 for a new intent, 200 when an Idempotency-Key replays an earlier one; Location either way."""
    location = url_for("transactions.get_transaction", transaction_id=transaction.id)
    return transaction, 202 if created else 200, {"Location": location}


def submit_and_enqueue(submit: Any) -> Answer:
    """Write the PENDING intent, commit, and only then publish it for settlement."""
    with unit_of_work() as session:
        actor = current_actor(session)
        submitted: Submitted = submit(session, actor)
        intent_accepted(session, actor, submitted)
    if submitted.created:
        settle_soon([submitted.transaction.id])
    return accepted(submitted.transaction, submitted.created)


def transfer_request(body: dict[str, Any]) -> TransferRequest:
    return TransferRequest(
        source_wallet_id=body["source_wallet_id"],
        destination_wallet_id=body["destination_wallet_id"],
        amount=body["amount"],
        currency=body["currency"],
        description=body["description"],
        metadata=body["metadata"],
    )


def _accept_in_one_statement(request: TransferRequest, idempotency_key: str | None) -> AcceptedTransfer:
    """The intent, its Idempotency-Key and its audit row written and committed by one statement: one
    round trip to Postgres. A refused request that claimed a key fails that statement's commit
    instead (see `claim_outlived_its_refusal`), having written nothing; it is asked again in a
    transaction, which raises the refusal as before. Refusals pay for the second ask, not acceptances."""
    try:
        with one_statement() as session:
            return transfers.accept_transfer(
                session, current_user_id(), request, idempotency_key=idempotency_key, origin=origin()
            )
    except IntegrityError as error:
        if not claim_outlived_its_refusal(error):
            raise
    with unit_of_work() as session:
        return transfers.accept_transfer(
            session, current_user_id(), request, idempotency_key=idempotency_key, origin=origin()
        )


def accept_transfer(body: dict[str, Any], idempotency_key: str | None) -> Any:
    """The hot path: one statement writes the intent, its Idempotency-Key and its audit row and is
    committed as it answers (one round trip to Postgres), then publish.
    With `?dry_run=true`, that statement's answer is predicted instead, and rolled back."""
    request = transfer_request(body)
    if dry_run.requested():
        return dry_run.answer(
            lambda session, actor: (
                transfers.accept_transfer(
                    session, actor.user_id, request, idempotency_key=idempotency_key, origin=origin()
                ).transaction.id
            )
        )
    outcome = _accept_in_one_statement(request, idempotency_key)
    if outcome.created:
        settle_soon([outcome.transaction.id])
    return accepted(outcome.transaction, outcome.created)


# Schema instances, not classes: webargs builds a schema from a class on every request (a deep copy
# of its fields), the same one each time.
IDEMPOTENCY_HEADER = IdempotencyHeaderSchema()
TRANSFER = TransferSchema()
REFUND = RefundSchema()


@blp.route("/transfer", methods=["POST"])
@authenticated(blp)
@blp.arguments(IDEMPOTENCY_HEADER, location="headers", as_kwargs=True)
@blp.arguments(TRANSFER)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def create_transfer(body: dict[str, Any], idempotency_key: str | None) -> Any:
    """Accept a transfer intent; a worker settles it. Poll the Location for its final status."""
    return accept_transfer(body, idempotency_key)


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.arguments(TransactionFilterSchema, location="query")
@blp.response(200, TransactionPageSchema)
@transaction_links(blp, (200,), "$response.body#/items/0/id")
def list_transactions(args: dict[str, Any]) -> dict[str, Any]:
    """Transactions the caller may see, newest first."""
    filters = TransactionFilters(
        status=TransactionStatus(args["status"]) if args["status"] else None,
        type=TransactionType(args["type"]) if args["type"] else None,
        wallet_id=args["wallet_id"],
        created_after=args["created_after"],
        created_before=args["created_before"],
    )
    with unit_of_work() as session:
        page = transfers.list_transactions(
            session, current_actor(session), filters, limit=args["limit"], cursor=args["cursor"]
        )
    return {"items": page.items, "next_cursor": page.next_cursor}


def _read(transaction_id: uuid.UUID) -> Transaction:
    with unit_of_work() as session:
        return transfers.get_visible_transaction(session, current_actor(session), transaction_id)


@blp.route("/<uuid:transaction_id>", methods=["GET"])
@authenticated(blp)
@blp.arguments(WaitQuerySchema, location="query")
@blp.response(200, TransactionSchema)
def get_transaction(args: dict[str, Any], transaction_id: uuid.UUID) -> Transaction:
    """One transaction; `?wait=N` holds the answer until it is final or N seconds pass."""
    return read_until_final(
        lambda: _read(transaction_id),
        lambda transaction: transaction.status != TransactionStatus.PENDING,
        args["wait"],
    )


@blp.route("/<uuid:transaction_id>/ledger", methods=["GET"])
@authenticated(blp)
@blp.response(200, EntryListSchema)
def transaction_ledger(transaction_id: uuid.UUID) -> dict[str, Any]:
    """The transaction's ledger entries on wallets the caller may see."""
    with unit_of_work() as session:
        entries = transfers.transaction_entries(session, current_actor(session), transaction_id)
    return {"items": entries, "next_cursor": None}


@blp.route("/<uuid:transaction_id>/cancel", methods=["POST"])
@authenticated(blp)
@blp.response(200, TransactionSchema)
def cancel_transaction(transaction_id: uuid.UUID) -> Transaction:
    """PENDING → CANCELLED; 409 once a worker has settled it."""
    with unit_of_work() as session:
        actor = current_actor(session)
        transaction = cancelling.cancel(session, actor, transaction_id)
        transaction_cancelled(session, actor, transaction)
        return transaction


@blp.route("/<uuid:transaction_id>/refund", methods=["POST"])
@authenticated(blp)
@blp.arguments(IDEMPOTENCY_HEADER, location="headers", as_kwargs=True)
@blp.arguments(REFUND)
@blp.response(202, TransactionSchema)
@dry_run.documented(blp, replay=TransactionSchema)
@transaction_links(blp, (202, 200))
def refund_transaction(body: dict[str, Any], transaction_id: uuid.UUID, idempotency_key: str | None) -> Any:
    """Send a COMPLETED transfer's money back, all that is left or `amount` of it: a REFUND intent
    from its destination to its source, settled like a transfer. Whoever may debit the destination."""
    request = refunds.RefundRequest(transaction_id, amount=body["amount"], reason=body["reason"])

    def submit(session: Any, actor: Any) -> Submitted:
        return refunds.submit_refund(session, actor, request, idempotency_key=idempotency_key)

    if dry_run.requested():
        return dry_run.answer(lambda session, actor: submit(session, actor).transaction.id)
    return submit_and_enqueue(submit)


@blp.route("/<uuid:transaction_id>/review", methods=["POST"])
@authenticated(blp)
@blp.arguments(ReviewDecisionSchema)
@blp.response(200, TransactionSchema)
def review_transaction(body: dict[str, Any], transaction_id: uuid.UUID) -> Transaction:
    """OWNER/ADMIN of the sending organisation, not its creator (403 `FOUR_EYES`), decide a transfer
    IN_REVIEW (409 otherwise): APPROVE releases the hold and sends it to be settled under the normal
    checks (PENDING until a worker settles it); REJECT releases the hold and fails it REJECTED_IN_REVIEW."""
    decision = review.Decision(body["decision"])
    with unit_of_work() as session:
        actor = current_actor(session)
        transaction = review.decide(session, actor, transaction_id, decision, body["note"])
        after = {"decision": decision.value, "note": body["note"], "status": str(transaction.status)}
        audit(session, actor, review.REVIEWED, target=transaction, before={"status": "IN_REVIEW"}, after=after)
    if decision is review.Decision.APPROVE:
        settle_soon([transaction.id])
    return transaction
