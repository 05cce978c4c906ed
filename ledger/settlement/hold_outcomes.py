"""The engine's side of holds (models/hold.py): lock the holds a batch's HOLD and CAPTURE intents
name, and write what the plan did to them, with their `hold.*` events.

Lock order (see `ledger.settlement.posting.lock_wallets`): a batch locks its holds after its
intents and before any wallet, as a void or an expiry does (hold, then wallet), so the two never
wait on each other in a circle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.integrity import events
from ledger.settlement.plan import HoldState, Intent, Plan
from models import HoldStatus, TransactionType

# Notes for after-commit hooks (ledger/notes.py style): outcomes to count, holds to expire on time.
HOLD_OUTCOMES_KEY = "vaultcraft.hold_outcomes"
HOLDS_HELD_KEY = "vaultcraft.holds_held"
HOLD_EXPIRY_LAG_KEY = "vaultcraft.hold_expiry_lag"

HELD, CAPTURED, FAILED = "hold.held", "hold.captured", "hold.failed"

_HOLD_STATES = """
    SELECT id, status, amount, captured_amount, reserved_amount, final_capture_id FROM holds
     WHERE id = ANY(CAST(:ids AS uuid[]))
     ORDER BY id
"""
_LOCK_HOLDS = text(_HOLD_STATES + "   FOR NO KEY UPDATE")
_READ_HOLDS = text(_HOLD_STATES)


def hold_ids(intents: Iterable[Intent]) -> set[uuid.UUID]:
    ids = set()
    for intent in intents:
        if intent.type == TransactionType.HOLD:
            ids.add(intent.id)
        elif intent.hold_id is not None:
            ids.add(intent.hold_id)
    return ids


def lock_holds(session: Session, intents: Iterable[Intent]) -> dict[uuid.UUID, HoldState]:
    """Row-lock the holds these intents name, in id order. No query when none does."""
    ids = hold_ids(intents)
    if not ids:
        return {}
    rows = session.execute(_LOCK_HOLDS, {"ids": sorted(ids)}).all()
    return {row.id: HoldState(*row) for row in rows}


def read_holds(session: Session, intents: Iterable[Intent]) -> dict[uuid.UUID, HoldState]:
    """The holds these intents name, as they stand, without a lock (a dry run's prediction)."""
    ids = hold_ids(intents)
    if not ids:
        return {}
    rows = session.execute(_READ_HOLDS, {"ids": sorted(ids)}).all()
    return {row.id: HoldState(*row) for row in rows}


_WRITE_HOLDS = text(
    """
    UPDATE holds AS h
       SET status = v.status, captured_amount = v.captured, reserved_amount = v.reserved,
           failure_reason = v.reason,
           expires_at = CASE WHEN h.status = 'PENDING' AND v.status = 'HELD'
                             THEN CAST(:posted_at AS timestamptz) + h.expires_in * interval '1 second'
                             ELSE h.expires_at END,
           ended_at = CASE WHEN v.status IN ('PENDING', 'HELD') THEN NULL ELSE CAST(:posted_at AS timestamptz) END,
           updated_at = CAST(:posted_at AS timestamptz)
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:captured AS bigint[]),
                  CAST(:reserved AS bigint[]), CAST(:reasons AS text[])) AS v(id, status, captured, reserved, reason)
     WHERE h.id = v.id
    RETURNING h.*
    """
)


def write_holds(
    session: Session, intents: Sequence[Intent], plan: Plan, holds: Mapping[uuid.UUID, HoldState], posted_at: datetime
) -> PreparedHoldEvents:
    """Write the holds the plan changed; return their events (one per HOLD intent settled and per
    capture posted), built, for `record_prepared` to write once the batch has taken its last lock
    (`ledger.settlement.posting`: the late wallets). Building them under a hot wallet's lock kept
    every batch of captures towards it waiting that much longer."""
    touched = [h for h in holds.values() if h.touched]
    if not touched:
        return PreparedHoldEvents()
    rows = session.execute(
        _WRITE_HOLDS,
        {
            "ids": [h.id for h in touched],
            "statuses": [h.status for h in touched],
            "captured": [h.captured_amount for h in touched],
            "reserved": [h.reserved_amount for h in touched],
            "reasons": [
                plan.failed[h.id].value if h.status == HoldStatus.FAILED and h.id in plan.failed else None
                for h in touched
            ],
            "posted_at": posted_at,
        },
    ).all()
    written = {row.id: row for row in rows}
    completed = set(plan.completed)
    announced: list[HoldEvent] = []
    for intent in intents:
        if intent.type == TransactionType.HOLD and intent.id in written:
            row = written[intent.id]
            announced.append(HoldEvent(HELD if row.status == HoldStatus.HELD else FAILED, row))
        elif intent.type == TransactionType.CAPTURE and intent.id in completed and intent.hold_id in written:
            announced.append(HoldEvent(CAPTURED, written[intent.hold_id], {"capture_id": intent.id}))
    now_held = set(plan.held)  # once: built per row, it cost a batch of 1,000 holds a million hashes
    held = [(row.id, row.expires_at) for row in rows if row.id in now_held]
    if held:
        session.info.setdefault(HOLDS_HELD_KEY, []).extend(held)
    return prepare_hold_events(announced)


def hold_data(row: Any) -> dict[str, Any]:
    """The hold as events carry it (the API's fields but the list of captures)."""
    status = str(row.status)
    remaining = row.amount - row.captured_amount if status in (HoldStatus.PENDING, HoldStatus.HELD) else 0
    return {
        "id": row.id,
        "status": status,
        "amount": row.amount,
        "captured_amount": row.captured_amount,
        "remaining_amount": remaining,
        "currency": row.currency,
        "source_wallet_id": row.source_wallet_id,
        "destination_wallet_id": row.destination_wallet_id,
        "organization_id": row.organization_id,
        "expires_at": row.expires_at,
        "failure_reason": row.failure_reason,
        "description": row.description,
        "metadata": getattr(row, "metadata_", None) if hasattr(row, "metadata_") else row.metadata,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
    }


class HoldEvent(NamedTuple):
    """One `hold.*` event to write: its type, the hold (a holds row or a Hold), and extra fields."""

    type: str
    row: Any
    extra: Mapping[str, Any] = {}


def record_hold_event(session: Session, event_type: str, row: Any, **extra: Any) -> None:
    """One `hold.*` event about this hold (a holds row or a Hold), and a note counting the outcome."""
    record_hold_events(session, [HoldEvent(event_type, row, extra)])


@dataclass(frozen=True)
class PreparedHoldEvents:
    """`hold.*` events built (outbox rows), not yet written, and their outcomes."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)


def record_hold_events(session: Session, announced: Sequence[HoldEvent]) -> None:
    """The `hold.*` events of a unit of work, in the order given, in one INSERT however many (a
    batch of 1,000 holds wrote 1,000 single-row INSERTs before, each a round trip made while the
    batch held its wallets' row locks), and the notes counting their outcomes."""
    record_prepared(session, prepare_hold_events(announced))


def record_prepared(session: Session, prepared: PreparedHoldEvents) -> None:
    if not prepared.rows:
        return
    events.record_prepared(session, prepared.rows)
    counts = session.info.setdefault(HOLD_OUTCOMES_KEY, {})
    for outcome in prepared.outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1


def prepare_hold_events(announced: Sequence[HoldEvent]) -> PreparedHoldEvents:
    if not announced:
        return PreparedHoldEvents()
    rows = events.prepare(
        [
            events.Event(
                e.type,
                ("hold", e.row.id),
                {**hold_data(e.row), **e.extra},
                (e.row.source_wallet_id, e.row.destination_wallet_id),
                (e.row.organization_id,),
            )
            for e in announced
        ]
    )
    return PreparedHoldEvents(rows, [e.type.removeprefix("hold.") for e in announced])
