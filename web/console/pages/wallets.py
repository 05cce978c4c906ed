"""Wallets: the list the caller may see, and one wallet with its balance over time and its entries."""

from __future__ import annotations

import uuid
from datetime import datetime

from ledger import statements
from ledger.access import get_visible_wallet, visible_wallets
from ledger.pagination import paginate
from models import Wallet, WalletStatus, WalletType
from web.console import charts
from web.console.blueprint import arg, bp, choice, object_id, page_args, reading, render

# The chart draws the wallet's newest entries, up to this many (one index range scan).
CHART_ENTRIES_MAX = 500


@bp.route("/wallets", methods=["GET"])
def wallets() -> str:
    limit, cursor = page_args()
    wallet_type, status = choice("type", WalletType), choice("status", WalletStatus)
    currency = (arg("currency") or "").upper()[:3] or None
    with reading() as (session, actor):
        query = visible_wallets(actor)
        if wallet_type:
            query = query.where(Wallet.type == wallet_type)
        if status:
            query = query.where(Wallet.status == status)
        if currency:
            query = query.where(Wallet.currency == currency)
        page = paginate(
            session, query, keys=(Wallet.created_at, Wallet.id), kinds=(datetime, uuid.UUID), limit=limit, cursor=cursor
        )
    filters = {"type": wallet_type, "status": status, "currency": currency}
    return render(
        "console/wallets.html",
        page=page,
        filters=filters,
        types=list(WalletType),
        statuses=list(WalletStatus),
    )


@bp.route("/wallets/<wallet_id>", methods=["GET"])
def wallet(wallet_id: str) -> str:
    limit, cursor = page_args()
    with reading() as (session, actor):
        found = get_visible_wallet(session, actor, object_id(wallet_id, "wallet"))
        entries = statements.wallet_entries(session, actor, found.id, limit=limit, cursor=cursor)
        newest = statements.wallet_entries(session, actor, found.id, limit=CHART_ENTRIES_MAX, cursor=None)
        chart = charts.wallet_balance(newest.items, found.currency)
    return render(
        "console/wallet.html", wallet=found, entries=entries, balance_chart=chart, chart_max=CHART_ENTRIES_MAX
    )
