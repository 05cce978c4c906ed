"""The audit log of the caller's organisation, and every failed login for platform operators."""

from __future__ import annotations

from typing import Any

from ledger.integrity import audit
from models import AuditLog
from web.api import Blueprint
from web.db import unit_of_work
from web.schemas.common import PageArgsSchema, page_schema
from web.schemas.integrity import AuditFilterSchema, AuditLogSchema, FailedLoginSchema
from web.security import authenticated, current_actor

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit-logs", description="Audit trail")

AuditPageSchema = page_schema(AuditLogSchema, "AuditLogPage")
FailedLoginPageSchema = page_schema(FailedLoginSchema, "FailedLoginPage")


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


def failed_login_view(row: AuditLog) -> dict[str, Any]:
    after = row.after or {}
    return {
        "id": row.id,
        "occurred_at": row.occurred_at,
        "reason": after.get("reason"),
        # Only an account's email: rows of emails nobody has keep none (earlier ones kept it as typed).
        "email": row.actor_label if row.target_id else None,
        "email_hash": after.get("email_hash"),
        "user_id": row.target_id,
        "organization_id": row.organization_id,
        "source_address": row.source_address,
        "request_id": row.request_id,
    }


@blp.route("/failed-logins", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, FailedLoginPageSchema)
def list_failed_logins(args: dict[str, Any]) -> dict[str, Any]:
    """Platform operators: every failed login, on an account or for an email nobody has, newest first."""
    with unit_of_work() as session:
        page = audit.list_failed_logins(session, current_actor(session), limit=args["limit"], cursor=args["cursor"])
        return {"items": [failed_login_view(row) for row in page.items], "next_cursor": page.next_cursor}
