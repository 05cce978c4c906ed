"""Transactions: search by id or reference, filters by status and kind, and one transaction with its
entries, its events and their webhook deliveries."""

from __future__ import annotations

import uuid

from flask import redirect, url_for
from werkzeug.wrappers import Response

from ledger import insight
from ledger.intents import transfers
from ledger.intents.transfers import TransactionFilters
from models import TransactionStatus, TransactionType
from web.console.blueprint import arg, bp, choice, object_id, page_args, reading, render


@bp.route("/transactions", methods=["GET"])
def transactions() -> str | Response:
    query = arg("q")
    if query:
        try:
            return redirect(url_for("console.transaction", transaction_id=str(uuid.UUID(query))))
        except ValueError:
            with reading() as (session, actor):
                found = insight.find_by_reference(session, actor, query)
            return render("console/transactions.html", found=found, q=query, page=None, filters={}, **_choices())
    limit, cursor = page_args()
    filters = TransactionFilters(status=choice("status", TransactionStatus), type=choice("kind", TransactionType))
    with reading() as (session, actor):
        page = transfers.list_transactions(session, actor, filters, limit=limit, cursor=cursor)
    shown = {"status": filters.status, "kind": filters.type}
    return render("console/transactions.html", page=page, found=None, q=None, filters=shown, **_choices())


def _choices() -> dict[str, list[str]]:
    return {"statuses": list(TransactionStatus), "kinds": list(TransactionType)}


@bp.route("/transactions/<transaction_id>", methods=["GET"])
def transaction(transaction_id: str) -> str:
    with reading() as (session, actor):
        found = transfers.get_visible_transaction(session, actor, object_id(transaction_id, "transaction"))
        entries = transfers.transaction_entries(session, actor, found.id)
        events = insight.transaction_events(session, actor, found.id)
        deliveries = insight.event_deliveries(session, actor, [e.event_id for e in events])
    return render("console/transaction.html", transaction=found, entries=entries, events=events, deliveries=deliveries)
