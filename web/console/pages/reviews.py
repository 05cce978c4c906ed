"""The review queue: transfers IN_REVIEW, each with `approve` and `reject` buttons.

A decision is the API's (POST /transactions/{id}/review): ledger.intents.review.decide, under the
same rules (OWNER/ADMIN of the sending organisation, never the transfer's creator: four eyes), the
same audit row, and an approved transfer is sent to be settled the same way.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for

from ledger.errors import Conflict, Forbidden
from ledger.intents import review
from tasks.settlement import settle_soon
from web import denials
from web.console.blueprint import bp, object_id, page_args, reading, render
from web.request_context import audit

NOTE_LENGTH_MAX = 500


def _queue(error: str | None = None) -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        page = review.list_reviews(session, actor, limit=limit, cursor=cursor)
    return render("console/reviews.html", page=page, error=error)


@bp.route("/reviews", methods=["GET"])
def reviews() -> str:
    return _queue()


@bp.route("/reviews/<transaction_id>", methods=["POST"])
def decide(transaction_id: str) -> Any:
    if "approve" in request.form:
        decision = review.Decision.APPROVE
    elif "reject" in request.form:
        decision = review.Decision.REJECT
    else:
        return _queue("Choose approve or reject."), 400
    note = (request.form.get("note") or "").strip()[:NOTE_LENGTH_MAX] or None
    try:
        with reading() as (session, actor):
            transaction = review.decide(session, actor, object_id(transaction_id, "transaction"), decision, note)
            after = {"decision": decision.value, "note": note, "status": str(transaction.status), "via": "console"}
            audit(session, actor, review.REVIEWED, target=transaction, before={"status": "IN_REVIEW"}, after=after)
    except Forbidden as refused:
        denials.audit_denial(refused, 403)
        return _queue(refused.message), 403
    except Conflict as refused:
        return _queue(refused.message), 409
    if decision is review.Decision.APPROVE:
        settle_soon([transaction.id])
    flash(f"Transfer {transaction.id} {'approved' if decision is review.Decision.APPROVE else 'rejected'}.")
    return redirect(url_for("console.reviews"), code=303)
