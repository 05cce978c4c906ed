"""Single intents from the API are settled by debounced drains, not by one task each."""

from __future__ import annotations

import tasks.settlement


def test_a_burst_of_transfers_settles_with_far_fewer_tasks_than_intents(api, db, monkeypatch):
    published = []
    publish = tasks.settlement.drain_pending.apply_async

    def counting(*args, **kwargs):
        published.append(1)
        return publish(*args, **kwargs)

    monkeypatch.setattr(tasks.settlement.drain_pending, "apply_async", counting)
    owner = api.signup()
    source = api.funded_wallet(owner, 100_000)
    destinations = [api.create_wallet(owner) for _ in range(3)]
    published.clear()
    ids = [api.transfer(owner, source, destinations[n % 3], 7).json["id"] for n in range(120)]

    assert [api.wait_final(owner, i)["status"] for i in ids] == ["COMPLETED"] * len(ids)
    assert 1 <= len(published) < len(ids)  # a wake covers every intent committed before its drain reads
    assert api.wallet(owner, source)["balance"] == 100_000 - 7 * len(ids)
    assert db.wallet_drift([source, *destinations]) == []
