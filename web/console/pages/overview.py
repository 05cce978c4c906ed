"""The overview: balances by currency and wallet type, the backlog, and activity charts."""

from __future__ import annotations

from ledger import insight, wallets
from web.console import charts
from web.console.blueprint import arg, bp, reading, render


@bp.route("/", methods=["GET"])
def overview() -> str:
    with reading() as (session, actor):
        summary = wallets.summarize(session, actor)
        backlog = insight.backlog(session, actor)
        # Activity is the organisation's as a whole: OWNER/ADMIN see it, as they see every wallet.
        activity = charts.activity(session, actor.organization_id, arg("range")) if actor.is_org_admin else None
    return render(
        "console/overview.html",
        summary=summary,
        backlog=backlog,
        activity=activity,
        ranges=list(charts.RANGES),
    )
