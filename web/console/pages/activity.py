"""Holds and P2P requests: what the caller may see of each, newest first."""

from __future__ import annotations

from ledger.intents import holds, p2p
from ledger.intents.holds import HoldFilters
from models import HoldStatus, P2PStatus
from web.console.blueprint import bp, choice, page_args, reading, render
from web.routes.holds import hold_view
from web.routes.p2p import request_views


@bp.route("/holds", methods=["GET"])
def holds_page() -> str:
    limit, cursor = page_args()
    status = choice("status", HoldStatus)
    with reading() as (session, actor):
        page = holds.list_holds(session, actor, HoldFilters(status=status), limit=limit, cursor=cursor)
        captures = holds.capture_ids(session, [h.id for h in page.items])
        rows = [hold_view(h, captures[h.id]) for h in page.items]
    return render("console/holds.html", page=page, rows=rows, status=status, statuses=list(HoldStatus))


@bp.route("/p2p", methods=["GET"])
def p2p_page() -> str:
    limit, cursor = page_args()
    status = choice("status", P2PStatus)
    with reading() as (session, actor):
        page = p2p.list_requests(session, actor, role=None, status=status, limit=limit, cursor=cursor)
        rows = request_views(session, page.items)
    return render("console/p2p.html", page=page, rows=rows, status=status, statuses=list(P2PStatus), me=actor.user_id)
