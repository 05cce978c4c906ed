"""Settlement batches with their net positions, and reconciliation runs with their findings: what the
API shows OWNER/ADMIN (their organisation's part) and operators (everything)."""

from __future__ import annotations

from ledger.clearing import batches as settlement_batches
from ledger.errors import Forbidden
from ledger.integrity import reconciliation
from web.console.blueprint import bp, object_id, page_args, reading, render
from web.routes.settlements import batch_views


@bp.route("/settlements", methods=["GET"])
def settlements() -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        try:
            page = settlement_batches.list_batches(session, actor, limit=limit, cursor=cursor)
        except Forbidden as refused:
            return render("console/settlements.html", page=None, batches=[], refused=refused.message)
        views = batch_views(session, actor, page.items)
    return render("console/settlements.html", page=page, batches=views, refused=None)


@bp.route("/settlements/<batch_id>", methods=["GET"])
def settlement(batch_id: str) -> str:
    with reading() as (session, actor):
        batch = settlement_batches.get_batch(session, actor, object_id(batch_id, "settlement_batch"))
        view = batch_views(session, actor, [batch])[0]
    return render("console/settlements.html", page=None, batches=[view], refused=None, single=True)


@bp.route("/reconciliation", methods=["GET"])
def reconciliation_runs() -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        try:
            page = reconciliation.list_runs(session, actor, limit=limit, cursor=cursor)
        except Forbidden as refused:
            return render("console/reconciliation.html", page=None, refused=refused.message)
    return render("console/reconciliation.html", page=page, refused=None)


@bp.route("/reconciliation/<run_id>", methods=["GET"])
def reconciliation_run(run_id: str) -> str:
    with reading() as (session, actor):
        run, findings = reconciliation.get_run(session, actor, object_id(run_id, "reconciliation_run"))
    return render("console/reconciliation_run.html", run=run, findings=findings)
