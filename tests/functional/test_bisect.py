"""An unexpected error in a batch: the others settle, the culprit alone stays PENDING and is reported."""

from __future__ import annotations

import uuid

import pytest

import ledger.settlement.plan
from settings import get_settings
from tasks.settlement import settle_or_bisect


def test_batch_splits_until_the_culprit_stands_alone(api, unpublished, monkeypatch):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    ids = [api.transfer(owner, source, destination, 10).json["id"] for _ in range(5)]
    culprit = uuid.UUID(ids[2])
    real_refusal = ledger.settlement.plan.refusal

    def exploding_refusal(intent, source_state, destination_state):
        if intent.id == culprit:
            raise RuntimeError("unexpected")
        return real_refusal(intent, source_state, destination_state)

    monkeypatch.setattr(ledger.settlement.plan, "refusal", exploding_refusal)
    with pytest.raises(RuntimeError):
        settle_or_bisect([uuid.UUID(i) for i in ids])

    statuses = {i: api.wait_final(owner, i, seconds=0)["status"] for i in ids}
    assert statuses.pop(str(culprit)) == "PENDING"
    # Those accepted before it settled; those after it on its wallet wait for their turn (ledger/settlement/order.py).
    assert statuses == {ids[0]: "COMPLETED", ids[1]: "COMPLETED", ids[3]: "PENDING", ids[4]: "PENDING"}
    assert api.wallet(owner, source)["balance"] == 980

    # Until the culprit is parked (ledger/settlement/parking.py): then it no longer holds its wallet back, and
    # the round that parks it settles them.
    for _ in range(get_settings().settle_failures_before_park - 1):
        with pytest.raises(RuntimeError):
            settle_or_bisect([uuid.UUID(i) for i in ids])
    culprit_now = api.get(f"/transactions/{culprit}", owner).json
    assert (culprit_now["status"], culprit_now["parked"]) == ("PENDING", True)
    assert culprit_now["park_reason"] == "RuntimeError: unexpected"
    assert [api.wait_final(owner, i, seconds=0)["status"] for i in ids[3:]] == ["COMPLETED", "COMPLETED"]
    assert api.wallet(owner, source)["balance"] == 960
    assert settle_or_bisect([uuid.UUID(i) for i in ids]).skipped == 5  # the parked one is passed by, no error
