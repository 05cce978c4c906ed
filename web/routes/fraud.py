"""Fraud review: the organisation's rules, and its queue of transfers in review
(ledger/settlement/review.py stops them; ledger/intents/review.py decides them)."""

from __future__ import annotations

from typing import Any

from ledger.access import require_org_admin
from ledger.intents import review as reviews
from ledger.settlement import review
from web.api import Blueprint
from web.db import unit_of_work
from web.request_context import audit
from web.routes.transactions import transaction_links
from web.schemas.common import PageArgsSchema, page_schema
from web.schemas.fraud import FraudRulesSchema, FraudRulesUpdateSchema
from web.schemas.transactions import TransactionSchema
from web.security import authenticated, current_actor

rules_blp = Blueprint(
    "fraud_rules", __name__, url_prefix="/api/v1/organizations/fraud-rules", description="Fraud rules (review)"
)
reviews_blp = Blueprint("reviews", __name__, url_prefix="/api/v1/reviews", description="Transfers in review")

ReviewPageSchema = page_schema(TransactionSchema, "ReviewPage")


@rules_blp.route("/", methods=["GET"])
@authenticated(rules_blp)
@rules_blp.response(200, FraudRulesSchema)
def get_fraud_rules() -> dict[str, Any]:
    """OWNER/ADMIN: the organisation's fraud rules; null means off."""
    with unit_of_work() as session:
        actor = current_actor(session)
        require_org_admin(actor)
        return review.rules_view(actor.organization_id, review.get_rules(session, actor.organization_id))


@rules_blp.route("/", methods=["PUT"])
@authenticated(rules_blp)
@rules_blp.arguments(FraudRulesUpdateSchema)
@rules_blp.response(200, FraudRulesSchema)
def put_fraud_rules(body: dict[str, Any]) -> dict[str, Any]:
    """OWNER/ADMIN replace the organisation's rules (an omitted or null rule is off). Transfers
    settled from then on that trip one wait IN_REVIEW, their amount held, for a decision."""
    with unit_of_work() as session:
        actor = current_actor(session)
        row, before, after = review.set_rules(session, actor, review.Rules(**body))
        target = ("fraud_rules", actor.organization_id)
        audit(session, actor, "fraud_rules.updated", target=target, before=before, after=after)
        return review.rules_view(actor.organization_id, row)


@reviews_blp.route("/", methods=["GET"])
@authenticated(reviews_blp)
@reviews_blp.arguments(PageArgsSchema, location="query")
@reviews_blp.response(200, ReviewPageSchema)
@transaction_links(reviews_blp, (200,), "$response.body#/items/0/id")
def list_reviews(args: dict[str, Any]) -> dict[str, Any]:
    """Transfers IN_REVIEW the caller may see, newest first."""
    with unit_of_work() as session:
        page = reviews.list_reviews(session, current_actor(session), limit=args["limit"], cursor=args["cursor"])
    return {"items": page.items, "next_cursor": page.next_cursor}
