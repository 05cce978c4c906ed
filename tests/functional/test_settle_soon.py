"""Single intents from the API are settled by debounced drains, not by one task each."""

from __future__ import annotations

import tasks.settlement
import tasks.wake


def test_a_burst_behind_a_pending_drain_publishes_nothing_and_that_drain_settles_it(api, db, monkeypatch):
    published = []
    publish = tasks.settlement.drain_pending.apply_async

    def counting(*args, **kwargs):
        published.append(1)
        return publish(*args, **kwargs)

    monkeypatch.setattr(tasks.settlement.drain_pending, "apply_async", counting)
    owner = api.signup()
    source = api.funded_wallet(owner, 100_000)
    destinations = [api.create_wallet(owner) for _ in range(3)]
    published.clear()  # the funding deposit's own wake
    # A drain is on its way and has not read yet (its key is set, for longer than the burst takes).
    wake = tasks.settlement.SETTLE_WAKE
    tasks.wake.redis_client().set(wake.key, "1", px=60_000)
    ids = [api.transfer(owner, source, destinations[n % 3], 7).json["id"] for n in range(50)]
    assert published == []  # fifty intents, no message: the pending drain will see them all
    assert {api.get(f"/transactions/{i}", owner).json["status"] for i in ids} == {"PENDING"}

    publish()  # that drain arrives: it clears the key, then reads and settles every intent
    assert [api.wait_final(owner, i)["status"] for i in ids] == ["COMPLETED"] * len(ids)
    assert tasks.wake.redis_client().get(wake.key) is None
    assert api.wallet(owner, source)["balance"] == 100_000 - 7 * len(ids)
    assert db.wallet_drift([source, *destinations]) == []
    last = api.transfer(owner, source, destinations[0], 7).json["id"]
    assert published == [1]  # with no drain on its way, the next intent publishes one
    assert api.wait_final(owner, last)["status"] == "COMPLETED"
