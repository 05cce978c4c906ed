"""The audit log and webhook endpoints with their deliveries: OWNER/ADMIN pages, as in the API."""

from __future__ import annotations

from ledger.errors import Forbidden
from ledger.integrity import audit
from notify import deliveries, endpoints
from web.console.blueprint import arg, bp, object_id, page_args, reading, render


@bp.route("/audit", methods=["GET"])
def audit_log() -> str:
    limit, cursor = page_args()
    action = arg("action")
    with reading() as (session, actor):
        try:
            page = audit.list_audit_logs(session, actor, audit.AuditFilters(action=action), limit=limit, cursor=cursor)
        except Forbidden as refused:
            return render("console/audit.html", page=None, action=action, refused=refused.message)
    return render("console/audit.html", page=page, action=action, refused=None)


@bp.route("/webhooks", methods=["GET"])
def webhooks() -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        try:
            page = endpoints.list_endpoints(session, actor, limit=limit, cursor=cursor)
        except Forbidden as refused:
            return render("console/webhooks.html", page=None, refused=refused.message)
        views = [endpoints.endpoint_view(e) for e in page.items]
    return render("console/webhooks.html", page=page, endpoints=views, refused=None)


@bp.route("/webhooks/<webhook_id>", methods=["GET"])
def webhook(webhook_id: str) -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        found = endpoints.get_endpoint(session, actor, object_id(webhook_id, "webhook"))
        page = deliveries.list_deliveries(session, actor, found.id, limit=limit, cursor=cursor)
        rows = [deliveries.delivery_view(d) for d in page.items]
    return render("console/webhook.html", endpoint=endpoints.endpoint_view(found), page=page, rows=rows)
