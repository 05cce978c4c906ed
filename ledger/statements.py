"""Reading a wallet's history: its entries, and its balance at a past instant."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.access import Actor, get_visible_wallet
from ledger.pagination import Page, paginate
from models import LedgerEntry


def wallet_entries(
    session: Session, actor: Actor, wallet_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[LedgerEntry]:
    """Entries newest first; wallet_version orders them exactly, whatever the clock said."""
    get_visible_wallet(session, actor, wallet_id)
    query = select(LedgerEntry).where(LedgerEntry.wallet_id == wallet_id)
    return paginate(session, query, keys=(LedgerEntry.wallet_version,), kinds=(int,), limit=limit, cursor=cursor)


def balance_as_of(session: Session, actor: Actor, wallet_id: uuid.UUID, instant: datetime) -> tuple[int, int]:
    """(balance, version) after the last entry posted at or before `instant`; (0, 0) before any."""
    get_visible_wallet(session, actor, wallet_id)
    # Entries carry the time they were written under the wallet's lock, so created_at never runs
    # backwards along wallet_version and the last entry by version is the last one by time.
    last = session.execute(
        select(LedgerEntry.balance_after, LedgerEntry.wallet_version)
        .where(LedgerEntry.wallet_id == wallet_id, LedgerEntry.created_at <= instant)
        .order_by(LedgerEntry.wallet_version.desc())
        .limit(1)
    ).one_or_none()
    return (0, 0) if last is None else (last.balance_after, last.wallet_version)
