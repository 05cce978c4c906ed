"""Risk controls: the caller's organisation's limits on outgoing transfers (see ledger/settlement/risk.py)."""

from __future__ import annotations

from typing import Any

from ledger.settlement import risk
from web.api import Blueprint
from web.db import unit_of_work
from web.request_context import audit
from web.schemas.risk import RiskLimitsSchema, RiskLimitsUpdateSchema
from web.security import authenticated, current_actor

blp = Blueprint(
    "risk", __name__, url_prefix="/api/v1/organizations/risk-limits", description="Risk controls (fraud limits)"
)


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.response(200, RiskLimitsSchema)
def get_risk_limits() -> dict[str, Any]:
    """Any member: the organisation's limits; null means no limit."""
    with unit_of_work() as session:
        actor = current_actor(session)
        return risk.limits_view(actor.organization_id, risk.get_limits(session, actor.organization_id))


@blp.route("/", methods=["PUT"])
@authenticated(blp)
@blp.arguments(RiskLimitsUpdateSchema)
@blp.response(200, RiskLimitsSchema)
def put_risk_limits(body: dict[str, Any]) -> dict[str, Any]:
    """OWNER/ADMIN replace the organisation's limits (an omitted or null limit is removed). Intents
    settled from then on that would break one end FAILED with `RISK_LIMIT`."""
    with unit_of_work() as session:
        actor = current_actor(session)
        row, before, after = risk.set_limits(session, actor, risk.Limits(**body))
        target = ("risk_limits", actor.organization_id)
        audit(session, actor, "risk_limits.updated", target=target, before=before, after=after)
        return risk.limits_view(actor.organization_id, row)
