"""The audit log of the caller's organisation."""

from __future__ import annotations

from typing import Any

from ledger.integrity import audit
from web.api import Blueprint
from web.db import unit_of_work
from web.schemas.common import page_schema
from web.schemas.integrity import AuditFilterSchema, AuditLogSchema
from web.security import authenticated, current_actor

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit-logs", description="Audit trail")

AuditPageSchema = page_schema(AuditLogSchema, "AuditLogPage")


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.arguments(AuditFilterSchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit_logs(args: dict[str, Any]) -> dict[str, Any]:
    """OWNER/ADMIN: the organisation's sensitive actions, newest first, filtered."""
    filters = audit.AuditFilters(
        action=args["action"],
        actor_id=args["actor_id"],
        target_id=args["target_id"],
        occurred_after=args["occurred_after"],
        occurred_before=args["occurred_before"],
    )
    with unit_of_work() as session:
        page = audit.list_audit_logs(
            session, current_actor(session), filters, limit=args["limit"], cursor=args["cursor"]
        )
    return {"items": page.items, "next_cursor": page.next_cursor}
