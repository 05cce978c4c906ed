"""Reconciliation: run it now, list runs, read one run with its findings."""

from __future__ import annotations

import uuid
from typing import Any

from ledger.access import require_org_admin
from ledger.errors import Forbidden
from ledger.integrity import reconciliation
from models import ReconciliationMode
from tasks.reconciliation import run_reconciliation
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import origin
from web.schemas.common import PageArgsSchema, page_schema
from web.schemas.integrity import ReconciliationRequestSchema, ReconciliationRunDetailSchema, ReconciliationRunSchema
from web.security import authenticated, current_actor

blp = Blueprint("reconciliation", __name__, url_prefix="/api/v1/reconciliation", description="Ledger reconciliation")

RunPageSchema = page_schema(ReconciliationRunSchema, "ReconciliationRunPage")
RUN_PATH = "/api/v1/reconciliation/runs/{run_id}"


def _detail(run_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        run, findings = reconciliation.get_run(session, current_actor(session), run_id)
        return {**{c.key: getattr(run, c.key) for c in run.__table__.columns}, "findings": findings}


@blp.route("/run", methods=["POST"])
@authenticated(blp)
@blp.arguments(ReconciliationRequestSchema)
@blp.response(201, ReconciliationRunDetailSchema)
@links(
    blp, (201,), {"GetReconciliationRun": link("get", RUN_PATH, "the run", parameters={"run_id": "$response.body#/id"})}
)
def run(body: dict[str, Any]) -> dict[str, Any]:
    """Reconcile now: OWNER/ADMIN for their organisation's wallets, an operator for the platform
    (or one organisation). Answers the run and the findings the caller may see; 409 while another
    run is in progress."""
    with unit_of_work() as session:
        actor = current_actor(session)
    if actor.is_operator:
        scope = body["organization_id"]
    else:
        require_org_admin(actor)
        if body["organization_id"] not in (None, actor.organization_id):
            raise Forbidden("only operators reconcile another organisation", code="ROLE_REQUIRED")
        scope = actor.organization_id
    outcome = run_reconciliation(
        ReconciliationMode(body["mode"]), organization_id=scope, actor=actor, trigger="api", origin=origin()
    )
    return _detail(outcome["run_id"])


@blp.route("/runs", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, RunPageSchema)
@links(
    blp,
    (200,),
    {
        "GetReconciliationRun": link(
            "get", RUN_PATH, "the newest run", parameters={"run_id": "$response.body#/items/0/id"}
        )
    },
)
def list_runs(args: dict[str, Any]) -> dict[str, Any]:
    """Runs the caller may see, newest first: their organisation's and the platform-wide ones."""
    with unit_of_work() as session:
        page = reconciliation.list_runs(session, current_actor(session), limit=args["limit"], cursor=args["cursor"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/runs/<uuid:run_id>", methods=["GET"])
@authenticated(blp)
@blp.response(200, ReconciliationRunDetailSchema)
def get_run(run_id: uuid.UUID) -> dict[str, Any]:
    """One run and its findings (for an organisation, only findings about its own wallets)."""
    return _detail(run_id)
