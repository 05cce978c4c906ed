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

from sqlalchemy.orm import Session

from ledger.integrity import events
from ledger.settlement.plan import HoldState, Intent, Plan
from models import HoldStatus, TransactionType

# Notes for after-commit hooks (ledger/notes.py style): outcomes to count, holds to expire on time.
HOLD_OUTCOMES_KEY = "vaultcraft.hold_outcomes"
HOLDS_HELD_KEY = "vaultcraft.holds_held"
HOLD_EXPIRY_LAG_KEY = "vaultcraft.hold_expiry_lag"

HELD, CAPTURED, FAILED = "hold.held", "hold.captured", "hold.failed"
# Plain strings, compared once per intent of a batch.
_HELD, _FAILED = HoldStatus.HELD.value, HoldStatus.FAILED.value
_HOLD_INTENT, _CAPTURE_INTENT = TransactionType.HOLD.value, TransactionType.CAPTURE.value

# Written for the driver (`%(name)b` binary parameters, as ledger/settlement/posting.py's): a batch
# names up to 1,000 holds, and an id list sent as text is printed here and parsed there.
_HOLD_STATES = """
    SELECT id, status, amount, captured_amount, reserved_amount, final_capture_id FROM holds
     WHERE id = ANY(%(ids)b)
     ORDER BY id
"""
_LOCK_HOLDS = _HOLD_STATES + "   FOR NO KEY UPDATE"
_READ_HOLDS = _HOLD_STATES


def _execute(session: Session, statement: str, parameters: Mapping[str, Any]) -> Any:
    return session.connection().exec_driver_sql(statement, dict(parameters))


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
    rows = _execute(session, _LOCK_HOLDS, {"ids": sorted(ids)}).all()
    return {row[0]: HoldState(*row) for row in rows}


def read_holds(session: Session, intents: Iterable[Intent]) -> dict[uuid.UUID, HoldState]:
    """The holds these intents name, as they stand, without a lock (a dry run's prediction)."""
    ids = hold_ids(intents)
    if not ids:
        return {}
    rows = _execute(session, _READ_HOLDS, {"ids": sorted(ids)}).all()
    return {row[0]: HoldState(*row) for row in rows}


_WRITE_HOLDS = """
    UPDATE holds AS h
       SET status = v.status, captured_amount = v.captured, reserved_amount = v.reserved,
           failure_reason = v.reason,
           expires_at = CASE WHEN h.status = 'PENDING' AND v.status = 'HELD'
                             THEN %(posted_at)b::timestamptz + h.expires_in * interval '1 second'
                             ELSE h.expires_at END,
           ended_at = CASE WHEN v.status IN ('PENDING', 'HELD') THEN NULL ELSE %(posted_at)b::timestamptz END,
           updated_at = %(posted_at)b::timestamptz
      FROM unnest(%(ids)b::uuid[], %(statuses)b::text[], %(captured)b::bigint[], %(reserved)b::bigint[],
                  %(reasons)b::text[]) AS v(id, status, captured, reserved, reason)
     WHERE h.id = v.id
    RETURNING h.id, h.expires_at
"""


def write_holds(
    session: Session, intents: Sequence[Intent], plan: Plan, holds: Mapping[uuid.UUID, HoldState], posted_at: datetime
) -> PreparedHoldEvents:
    """Write the holds the plan changed; return their events (one per HOLD intent settled and per
    capture posted), for `record_prepared` to write once the batch has taken its last lock
    (`ledger.settlement.posting`: the late wallets).

    Only which events, about which hold, in which order, is decided here: their payloads are built
    in Postgres from the holds' rows when they are written (`_INSERT_HOLD_EVENTS`). Built here, from
    every column of every hold returned, they were most of what a capture cost the worker beyond a
    transfer (issue 20: 0.3 ms of Python per capture, for JSON that Postgres parsed back)."""
    touched = [h for h in holds.values() if h.touched]
    if not touched:
        return PreparedHoldEvents()
    rows = _execute(
        session,
        _WRITE_HOLDS,
        {
            "ids": [h.id for h in touched],
            "statuses": [h.status for h in touched],
            "captured": [h.captured_amount for h in touched],
            "reserved": [h.reserved_amount for h in touched],
            "reasons": [
                plan.failed[h.id].value if h.status == _FAILED and h.id in plan.failed else None for h in touched
            ],
            "posted_at": posted_at,
        },
    ).all()
    assert len(rows) == len(touched), "every hold the plan changed is written"
    completed = set(plan.completed)
    prepared = PreparedHoldEvents()
    for intent in intents:
        if intent.type == _HOLD_INTENT:
            hold = holds.get(intent.id)
            if hold is not None and hold.touched:
                prepared.add(intent.id, HELD if hold.status == _HELD else FAILED)
        elif intent.type == _CAPTURE_INTENT and intent.id in completed:
            prepared.add(intent.hold_id, CAPTURED, intent.id)
    if plan.held:
        now_held = set(plan.held)  # once: built per row, it cost a batch of 1,000 holds a million hashes
        session.info.setdefault(HOLDS_HELD_KEY, []).extend((row[0], row[1]) for row in rows if row[0] in now_held)
    return prepared


@dataclass
class PreparedHoldEvents:
    """The engine's `hold.*` events of a batch, in intent order, not yet written: per event, its
    hold, its type, and the capture it announces (None for `hold.held` and `hold.failed`)."""

    hold_ids: list[uuid.UUID | None] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    capture_ids: list[uuid.UUID | None] = field(default_factory=list)

    def add(self, hold_id: uuid.UUID | None, event_type: str, capture_id: uuid.UUID | None = None) -> None:
        self.hold_ids.append(hold_id)
        self.types.append(event_type)
        self.capture_ids.append(capture_id)


def _iso(column: str) -> str:
    return events.iso_sql(column)


# The events of `PreparedHoldEvents`, in its order (the outbox ids follow the ORDER BY), each with
# the hold as it stands now, at the end of the batch: what `hold_data` makes of the row, converted
# as the events module converts values (ids as text, instants as `isoformat()`), and the capture's
# id for `hold.captured`. tests/functional/test_hold_events.py holds the two to the same payloads.
_INSERT_HOLD_EVENTS = f"""
    INSERT INTO outbox_events (event_id, event_type, aggregate_type, aggregate_id, payload, wallet_ids,
                               organization_ids)
    SELECT uuid_v7(), e.event_type, 'hold', h.id::text,
           jsonb_build_object(
               'id', h.id::text, 'status', h.status, 'amount', h.amount, 'captured_amount', h.captured_amount,
               'remaining_amount', CASE WHEN h.status IN ('PENDING', 'HELD') THEN h.amount - h.captured_amount
                                        ELSE 0 END,
               'currency', h.currency, 'source_wallet_id', h.source_wallet_id::text,
               'destination_wallet_id', h.destination_wallet_id::text, 'organization_id', h.organization_id::text,
               'expires_at', {_iso("h.expires_at")}, 'failure_reason', h.failure_reason,
               'description', h.description, 'metadata', h.metadata,
               'created_at', {_iso("h.created_at")}, 'ended_at', {_iso("h.ended_at")}
           ) || CASE WHEN e.capture_id IS NULL THEN '{{}}'::jsonb
                     ELSE jsonb_build_object('capture_id', e.capture_id::text) END,
           ARRAY[LEAST(h.source_wallet_id, h.destination_wallet_id),
                 GREATEST(h.source_wallet_id, h.destination_wallet_id)],
           ARRAY[h.organization_id]
      FROM unnest(%(holds)b::uuid[], %(types)b::text[], %(captures)b::uuid[]) WITH ORDINALITY
           AS e(hold_id, event_type, capture_id, n)
      JOIN holds AS h ON h.id = e.hold_id
     ORDER BY e.n
"""


def record_prepared(session: Session, prepared: PreparedHoldEvents) -> None:
    """Write a batch's `hold.*` events (`write_holds`) in one statement, and the notes counting their outcomes."""
    if not prepared.types:
        return
    written = _execute(
        session,
        _INSERT_HOLD_EVENTS,
        {"holds": prepared.hold_ids, "types": prepared.types, "captures": prepared.capture_ids},
    ).rowcount
    assert written == len(prepared.types), "every hold event names a hold of the batch"
    session.info[events.OUTBOX_WRITTEN_KEY] = True
    _count_outcomes(session, prepared.types)


def _count_outcomes(session: Session, types: Iterable[str]) -> None:
    counts = session.info.setdefault(HOLD_OUTCOMES_KEY, {})
    for event_type in types:
        outcome = event_type.removeprefix("hold.")
        counts[outcome] = counts.get(outcome, 0) + 1


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


def record_hold_events(session: Session, announced: Sequence[HoldEvent]) -> None:
    """The `hold.*` events of a unit of work (a void, an expiry), in the order given, in one INSERT
    however many, and the notes counting their outcomes."""
    if not announced:
        return
    events.record_prepared(
        session,
        events.prepare(
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
        ),
    )
    _count_outcomes(session, [e.type for e in announced])
