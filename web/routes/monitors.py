"""Balance monitors on a wallet: whoever may see the wallet. The work is in ledger/monitors.py."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from ledger import monitors
from models import MonitorCondition
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit
from web.schemas.common import PageArgsSchema, page_schema
from web.schemas.monitors import MonitorCreateSchema, MonitorSchema
from web.security import authenticated, current_actor

blp = Blueprint(
    "monitors",
    __name__,
    url_prefix="/api/v1/wallets",
    description="Balance monitors: events when a threshold is crossed",
)

MonitorPageSchema = page_schema(MonitorSchema, "BalanceMonitorPage")
MONITORS_PATH = "/api/v1/wallets/{wallet_id}/monitors"


def _audited(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "wallet_id": str(view["wallet_id"]),
        **{key: view[key] for key in ("condition", "threshold", "in_condition")},
    }


@blp.route("/<uuid:wallet_id>/monitors", methods=["POST"])
@authenticated(blp)
@blp.arguments(MonitorCreateSchema)
@blp.response(201, MonitorSchema)
@links(
    blp,
    (201,),
    {
        "DeleteBalanceMonitor": link(
            "delete",
            MONITORS_PATH + "/{monitor_id}",
            "delete it",
            parameters={"wallet_id": "$response.body#/wallet_id", "monitor_id": "$response.body#/id"},
        )
    },
)
def create_monitor(body: dict[str, Any], wallet_id: uuid.UUID) -> dict[str, Any]:
    """Watch the wallet's available_balance against a threshold: `balance_monitor.triggered` when it
    crosses into the condition, `balance_monitor.resolved` when it crosses back. A new monitor starts
    in the state the wallet is in (`in_condition`) and announces nothing until the next crossing.
    SYSTEM wallets take none (422 SYSTEM_WALLET)."""
    with unit_of_work() as session:
        actor = current_actor(session)
        monitor = monitors.create_monitor(
            session, actor, wallet_id, MonitorCondition(body["condition"]), body["threshold"]
        )
        view = monitors.monitor_view(monitor)
        audit(session, actor, "balance_monitor.created", target=("balance_monitor", monitor.id), after=_audited(view))
        return view


@blp.route("/<uuid:wallet_id>/monitors", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, MonitorPageSchema)
def list_monitors(args: dict[str, Any], wallet_id: uuid.UUID) -> dict[str, Any]:
    """The wallet's monitors, newest first."""
    with unit_of_work() as session:
        page = monitors.list_monitors(
            session, current_actor(session), wallet_id, limit=args["limit"], cursor=args["cursor"]
        )
        items = [monitors.monitor_view(m) for m in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@blp.route("/<uuid:wallet_id>/monitors/<uuid:monitor_id>", methods=["DELETE"])
@authenticated(blp)
@blp.response(204)
def delete_monitor(wallet_id: uuid.UUID, monitor_id: uuid.UUID) -> Response:
    """Delete the monitor: no event from it after this answer."""
    with unit_of_work() as session:
        actor = current_actor(session)
        monitor = monitors.delete_monitor(session, actor, wallet_id, monitor_id)
        before = _audited(monitors.monitor_view(monitor))
        audit(session, actor, "balance_monitor.deleted", target=("balance_monitor", monitor_id), before=before)
    return Response(status=204)
