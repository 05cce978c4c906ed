"""An unexpected error in a batch: the others settle, the culprit alone stays PENDING and is reported."""

from __future__ import annotations

import uuid

import pytest

import ledger.posting
from tasks.settlement import settle_or_bisect


def test_batch_splits_until_the_culprit_stands_alone(api, unpublished, monkeypatch):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    unpublished.start()
    ids = [api.transfer(owner, source, destination, 10).json["id"] for _ in range(5)]
    culprit = uuid.UUID(ids[2])
    real_refusal = ledger.posting.refusal

    def exploding_refusal(intent, source_state, destination_state):
        if intent.id == culprit:
            raise RuntimeError("unexpected")
        return real_refusal(intent, source_state, destination_state)

    monkeypatch.setattr(ledger.posting, "refusal", exploding_refusal)
    with pytest.raises(RuntimeError):
        settle_or_bisect([uuid.UUID(i) for i in ids])

    statuses = {i: api.wait_final(owner, i, seconds=0)["status"] for i in ids}
    assert statuses.pop(str(culprit)) == "PENDING"
    assert set(statuses.values()) == {"COMPLETED"}
    assert api.wallet(owner, source)["balance"] == 960
