"""Which ETA tasks expire a batch of holds: one per instant they expire at, of bounded size."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tasks.holds import expiry_tasks

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_holds_due_at_one_instant_share_their_tasks():
    due = NOW + timedelta(seconds=30)
    held = [(uuid.uuid4(), due) for _ in range(1_250)]
    tasks = expiry_tasks(held, horizon=NOW + timedelta(seconds=240), size=500)
    assert [(eta, len(ids)) for eta, ids in tasks] == [(due, 500), (due, 500), (due, 250)]
    assert [i for _, ids in tasks for i in ids] == [hold_id for hold_id, _ in held]


def test_each_instant_its_own_tasks_and_the_far_ones_left_to_the_sweeper():
    soon, later, far = (NOW + timedelta(seconds=s) for s in (1, 60, 3_600))
    held = [
        (uuid.uuid4(), soon),
        (uuid.uuid4(), later),
        (uuid.uuid4(), soon),
        (uuid.uuid4(), far),
        (uuid.uuid4(), None),
    ]
    tasks = expiry_tasks(held, horizon=NOW + timedelta(seconds=240), size=500)
    assert tasks == [(soon, [held[0][0], held[2][0]]), (later, [held[1][0]])]
