"""Expiring holds set-based: a batch of due holds in one unit of work, in a few statements whatever its size.

    lock the due holds (FOR NO KEY UPDATE SKIP LOCKED)  →  lock their source wallets, in id order
    →  release each wallet's share in one UPDATE  →  end the holds in one UPDATE  →  their events in one INSERT.

Holds, then wallets by id: the engine's lock order (`ledger.settlement.posting.lock_wallets`), so an
expiry and a batch capturing one of its holds never wait on each other in a circle. Each hold was
expired in its own transaction before (lock its wallet, update the hold, update the wallet, insert
its event): 10,000 holds due at one second were 10,000 transactions taking the same wallets' locks
one by one, and the last expired 35 s late.

Exactly once: a hold is expired only by the transaction that locked it while HELD and due. SKIP
LOCKED leaves a hold that a capture, a void or another expiry holds to whoever holds it; Postgres
checks the status again on the locked row, so a hold ended by a transaction that committed
meanwhile is not taken; the sweeper (beat) comes back for any hold left HELD and due.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import monitors
from ledger.settlement.hold_outcomes import HOLD_EXPIRY_LAG_KEY, HoldEvent, record_hold_events
from ledger.settlement.posting import execute, lock_wallets

EXPIRED = "hold.expired"

# The holds due now, most overdue first, through the partial index ix_holds_held_expires_at; those
# another transaction holds are left to the next pass. The status is checked again on the locked row.
_LOCK_DUE = """
    SELECT id, source_wallet_id, amount - captured_amount, expires_at FROM holds
     WHERE status = 'HELD' AND expires_at <= clock_timestamp()
     ORDER BY expires_at, id
     LIMIT %(limit)b
       FOR NO KEY UPDATE SKIP LOCKED
"""
# The same, among these holds only (an ETA task's): found by primary key.
_LOCK_DUE_AMONG = """
    SELECT id, source_wallet_id, amount - captured_amount, expires_at FROM holds
     WHERE id = ANY(%(ids)b) AND status || '' = 'HELD' AND expires_at <= clock_timestamp()
     ORDER BY expires_at, id
     LIMIT %(limit)b
       FOR NO KEY UPDATE SKIP LOCKED
"""
# What remains of each hold leaves its source's held amount: one row per wallet, however many holds.
_RELEASE = """
    UPDATE wallets AS w SET held_amount = w.held_amount - v.released, updated_at = now()
      FROM unnest(%(ids)b::uuid[], %(released)b::bigint[]) AS v(id, released)
     WHERE w.id = v.id
"""
# Captures still on their way find the hold ended (reserved_amount 0) and fail HOLD_EXPIRED.
_END = """
    UPDATE holds SET status = 'EXPIRED', reserved_amount = 0, ended_at = %(now)b, updated_at = %(now)b
     WHERE id = ANY(%(ids)b)
    RETURNING *
"""


@dataclass(frozen=True, slots=True)
class _Due:
    id: uuid.UUID
    source_wallet_id: uuid.UUID
    remaining: int
    expires_at: datetime


def expire_due(session: Session, *, hold_ids: Sequence[uuid.UUID] | None = None, limit: int) -> int:
    """Expire up to `limit` HELD holds past their `expires_at` (only among `hold_ids`, when given):
    release what remains of each, EXPIRED, one `hold.expired` event each. Returns how many.
    Safe to run twice, or many times at once (SKIP LOCKED): each hold expires once."""
    if hold_ids is None:
        rows = execute(session, _LOCK_DUE, {"limit": limit}).all()
    else:
        rows = execute(session, _LOCK_DUE_AMONG, {"ids": list(hold_ids), "limit": limit}).all()
    due = [_Due(*row) for row in rows]
    if not due:
        return 0
    wallets = lock_wallets(session, {h.source_wallet_id for h in due})
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    watches = monitors.watching(session, wallets.keys())
    # Each wallet's state after each hold it releases, in the holds' order: what its monitors cross.
    points: list[tuple[monitors.Point, uuid.UUID]] = []
    released: dict[uuid.UUID, int] = {}
    for hold in due:
        wallet = wallets[hold.source_wallet_id]
        wallet.hold(-hold.remaining)
        released[wallet.id] = released.get(wallet.id, 0) + hold.remaining
        if wallet.id in watches:
            points.append(((wallet.id, None, wallet.balance, wallet.held_amount), hold.id))
    execute(session, _RELEASE, {"ids": list(released), "released": list(released.values())})
    ended = {row.id: row for row in execute(session, _END, {"ids": [h.id for h in due], "now": now})}
    assert len(ended) == len(due), "every locked hold ends EXPIRED"
    record_hold_events(session, [HoldEvent(EXPIRED, ended[h.id]) for h in due])
    monitors.released_many(session, watches, points)
    session.info.setdefault(HOLD_EXPIRY_LAG_KEY, []).extend(max((now - h.expires_at).total_seconds(), 0.0) for h in due)
    return len(due)
