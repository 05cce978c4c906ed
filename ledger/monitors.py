"""Balance monitors (models/monitor.py): create, list, delete, and the crossings the engine announces.

A monitor is in its condition while the wallet's available balance (balance - held amount) is below
(or above) its threshold. Each change of that state is one event, `balance_monitor.triggered` into the
condition and `balance_monitor.resolved` out of it, written in the transaction that moved the
balance, under the wallet's row lock:

- the settlement engine (`ledger.settlement.posting`) reads the monitors of the wallets a batch
  locked, in one query, and the plan traces only those wallets: their balance and held amount after
  each intent, in intent order. A wallet that crosses down, up and down within one batch announces
  all three crossings, in that order, each once;
- a void or an expiry (`ledger.intents.holds`) releases held funds: one point, evaluated at once.

A monitor starts in the state its wallet is in when it is created, and announces nothing then: like
a threshold alert, it speaks when the balance next crosses. Its `in_condition` shows where it stands.
Creating or deleting one takes the wallet's row in share mode, so it waits for a batch that holds the
wallet and the next batch sees it: no crossing is decided against a stale state.

SYSTEM wallets (treasuries, clearing wallets) take no monitors: their balances are the organisation's
flows as a whole, moved by deposits, withdrawals and settlement batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ledger.access import Actor, not_found, visible_wallets, wallet_not_found
from ledger.errors import InvalidRequest, NotFound
from ledger.integrity import events
from ledger.pagination import Page, paginate
from models import BalanceMonitor, MonitorCondition, Wallet, WalletType
from models.monitor import MONITORS_PER_WALLET_MAX

TRIGGERED, RESOLVED = "balance_monitor.triggered", "balance_monitor.resolved"
_BELOW = MonitorCondition.AVAILABLE_BALANCE_BELOW.value

# Where a wallet stood after one change: (wallet id, the transaction that moved it, balance, held amount).
Point = tuple[uuid.UUID, uuid.UUID | None, int, int]


@dataclass(slots=True)
class Watch:
    """A monitor as a unit of work evaluates it, its state moving with the wallet's points."""

    id: uuid.UUID
    wallet_id: uuid.UUID
    organization_id: uuid.UUID
    condition: str
    threshold: int
    in_condition: bool
    changed: bool = False

    def holds_at(self, available: int) -> bool:
        return in_condition(self.condition, self.threshold, available)


def in_condition(condition: str, threshold: int, available: int) -> bool:
    return available < threshold if condition == _BELOW else available > threshold


@dataclass(frozen=True, slots=True)
class Crossing:
    watch: Watch
    into: bool  # into the condition (triggered) or out of it (resolved)
    available: int
    balance: int
    held_amount: int
    transaction_id: uuid.UUID | None
    hold_id: uuid.UUID | None


def crossings(watches: Mapping[uuid.UUID, Sequence[Watch]], points: Iterable[Point]) -> list[Crossing]:
    """Every change of state, in the order of the points. Pure: moves each watch's state along."""
    found = []
    for wallet_id, transaction_id, balance, held in points:
        available = balance - held
        for watch in watches.get(wallet_id, ()):
            into = watch.holds_at(available)
            if into != watch.in_condition:
                watch.in_condition = into
                watch.changed = True
                found.append(Crossing(watch, into, available, balance, held, transaction_id, None))
    return found


_WATCHING = """
    SELECT id, wallet_id, organization_id, condition, threshold, in_condition FROM balance_monitors
     WHERE wallet_id = ANY(%(ids)b)
     ORDER BY created_at, id
"""


def watching(session: Session, wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Watch]]:
    """The monitors on these wallets, by wallet: one indexed query, empty when there are none.
    The caller holds the wallets' row locks, so no monitor appears or goes meanwhile."""
    ids = list(wallet_ids)
    if not ids:
        return {}
    rows = session.connection().exec_driver_sql(_WATCHING, {"ids": ids}).all()
    watches: dict[uuid.UUID, list[Watch]] = {}
    for row in rows:
        watches.setdefault(row[1], []).append(Watch(*row))
    return watches


def announce(session: Session, watches: Mapping[uuid.UUID, Sequence[Watch]], points: Iterable[Point]) -> None:
    """Decide the crossings along `points` and write them: the monitors' new states and one event each."""
    if not watches:
        return
    found = crossings(watches, points)
    if not found:
        return
    _write_states(session, {c.watch.id: c.watch for c in found}.values())
    events.record_many(session, [_event(c, None) for c in found])


def released(
    session: Session,
    wallet_id: uuid.UUID,
    balance: int,
    held: int,
    hold_id: uuid.UUID | None = None,
    transaction_id: uuid.UUID | None = None,
) -> None:
    """A hold, or a transfer leaving review, released funds on this (locked) wallet outside the
    engine: evaluate its monitors."""
    watches = watching(session, [wallet_id])
    if not watches:
        return
    for crossing in crossings(watches, [(wallet_id, transaction_id, balance, held)]):
        session.execute(
            update(BalanceMonitor).where(BalanceMonitor.id == crossing.watch.id).values(in_condition=crossing.into)
        )
        _record(session, crossing, hold_id=hold_id)


def released_many(
    session: Session, watches: Mapping[uuid.UUID, Sequence[Watch]], points: Sequence[tuple[Point, uuid.UUID]]
) -> None:
    """Many holds released at once outside the engine (an expiry): each point with the hold that
    moved its wallet, in order; the crossings written in two statements, however many."""
    if not watches:
        return
    found = [(c, hold_id) for point, hold_id in points for c in crossings(watches, [point])]
    if not found:
        return
    _write_states(session, {c.watch.id: c.watch for c, _ in found}.values())
    events.record_many(session, [_event(c, hold_id) for c, hold_id in found])


def _write_states(session: Session, changed: Iterable[Watch]) -> None:
    changed = list(changed)
    session.connection().exec_driver_sql(
        """
        UPDATE balance_monitors AS m SET in_condition = v.in_condition
          FROM unnest(%(ids)b::uuid[], %(states)b::bool[]) AS v(id, in_condition)
         WHERE m.id = v.id
        """,
        {"ids": [w.id for w in changed], "states": [w.in_condition for w in changed]},
    )


def _record(session: Session, crossing: Crossing, hold_id: uuid.UUID | None = None) -> None:
    events.record_many(session, [_event(crossing, hold_id)])


def _event(crossing: Crossing, hold_id: uuid.UUID | None) -> events.Event:
    watch = crossing.watch
    return events.Event(
        TRIGGERED if crossing.into else RESOLVED,
        ("balance_monitor", watch.id),
        {
            "id": watch.id,
            "wallet_id": watch.wallet_id,
            "organization_id": watch.organization_id,
            "condition": watch.condition,
            "threshold": watch.threshold,
            "in_condition": crossing.into,
            "available_balance": crossing.available,
            "balance": crossing.balance,
            "held_amount": crossing.held_amount,
            "transaction_id": crossing.transaction_id,
            "hold_id": hold_id,
        },
        [watch.wallet_id],
        [watch.organization_id],
    )


# --- the API's side -----------------------------------------------------------------------------


def _shared_wallet(session: Session, actor: Actor, wallet_id: uuid.UUID) -> Wallet:
    """The wallet, if the caller may see it, row-locked in share mode: a batch that holds it finishes
    first, and the next one waits for this transaction (see the module's docstring)."""
    query = visible_wallets(actor).where(Wallet.id == wallet_id).with_for_update(read=True)
    wallet = session.scalars(query).one_or_none()
    if wallet is None:
        raise wallet_not_found(session, wallet_id)
    return wallet


def create_monitor(
    session: Session, actor: Actor, wallet_id: uuid.UUID, condition: MonitorCondition, threshold: int
) -> BalanceMonitor:
    """A monitor on a wallet the caller may see, in the state the wallet is in now (no event)."""
    wallet = _shared_wallet(session, actor, wallet_id)
    if wallet.type == WalletType.SYSTEM:
        raise InvalidRequest(
            "a SYSTEM wallet takes no monitors: its balance is the organisation's flows as a whole",
            code="SYSTEM_WALLET",
        )
    count = session.scalar(select(func.count()).where(BalanceMonitor.wallet_id == wallet_id))
    if (count or 0) >= MONITORS_PER_WALLET_MAX:
        raise InvalidRequest(f"a wallet carries at most {MONITORS_PER_WALLET_MAX} monitors", code="TOO_MANY_MONITORS")
    monitor = BalanceMonitor(
        wallet_id=wallet_id,
        organization_id=wallet.organization_id,
        condition=condition,
        threshold=threshold,
        in_condition=in_condition(condition.value, threshold, wallet.balance - wallet.held_amount),
        created_by=actor.user_id,
    )
    session.add(monitor)
    session.flush()
    return monitor


def list_monitors(
    session: Session, actor: Actor, wallet_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[BalanceMonitor]:
    """The wallet's monitors, newest first."""
    if session.scalars(visible_wallets(actor).where(Wallet.id == wallet_id)).one_or_none() is None:
        raise wallet_not_found(session, wallet_id)
    return paginate(
        session,
        select(BalanceMonitor).where(BalanceMonitor.wallet_id == wallet_id),
        keys=(BalanceMonitor.created_at, BalanceMonitor.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def delete_monitor(session: Session, actor: Actor, wallet_id: uuid.UUID, monitor_id: uuid.UUID) -> BalanceMonitor:
    """Remove a monitor: it announces nothing from this transaction's commit on."""
    _shared_wallet(session, actor, wallet_id)
    monitor = session.get(BalanceMonitor, monitor_id)
    if monitor is None or monitor.wallet_id != wallet_id:
        raise monitor_not_found(session, monitor_id)
    session.delete(monitor)
    session.flush()
    return monitor


def monitor_not_found(session: Session, monitor_id: uuid.UUID) -> NotFound:
    return not_found(session, BalanceMonitor, monitor_id, "balance_monitor", "monitor not found", "MONITOR_NOT_FOUND")


def monitor_view(monitor: BalanceMonitor) -> dict[str, Any]:
    return {
        "id": monitor.id,
        "wallet_id": monitor.wallet_id,
        "organization_id": monitor.organization_id,
        "condition": str(monitor.condition),
        "threshold": monitor.threshold,
        "in_condition": monitor.in_condition,
        "created_by": monitor.created_by,
        "created_at": monitor.created_at,
    }
