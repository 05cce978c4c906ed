"""Idempotency keys belong to the organisation, but a replay shows a transaction only to someone who may
see it; keys expire after their time to live and beat purges them."""

from __future__ import annotations

import uuid

import pytest

from tests.client import bulk_item

KEY_REUSED = (422, "IDEMPOTENCY_KEY_REUSED")


def answer(response) -> tuple[int, str]:
    return response.status_code, response.json["error"]["code"]


@pytest.fixture
def owners_transfer(api):
    """The OWNER's transfer under key `order-7`, and a MEMBER of the same organisation who cannot see it."""
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    first = api.transfer(owner, source, destination, 250, key="order-7")
    assert first.status_code == 202
    assert api.wait_final(owner, first.json["id"])["status"] == "COMPLETED"
    member = api.add_user(owner, "MEMBER")
    assert api.get(f"/transactions/{first.json['id']}", member).status_code == 404
    return owner, member, source, destination, first.json["id"]


def test_a_colleague_who_cannot_see_the_transaction_gets_no_replay_of_it(api, db, owners_transfer):
    owner, member, source, destination, transaction_id = owners_transfer
    body = {"source_wallet_id": source, "destination_wallet_id": destination, "amount": 250, "currency": "INR"}
    headers = {"Idempotency-Key": "order-7"}
    before = db.row_counts()

    for path in ("/transactions/transfer", "/wallets/transfer"):
        replay = api.post(path, member, headers=headers, json=body)
        # The answer a different request under this key gets: it tells nothing of the first one.
        assert answer(replay) == KEY_REUSED, (path, replay.json)
        assert transaction_id not in replay.get_data(as_text=True)
        other_body = api.post(path, member, headers=headers, json={**body, "amount": 251})
        assert answer(other_body) == answer(replay)

    batch = api.transfer_batch(member, [bulk_item(source, destination, 250, key="order-7")])
    [item] = batch.json["items"]
    assert (item["status_code"], item["error"]["code"]) == KEY_REUSED
    assert item["transaction"] is None and transaction_id not in batch.get_data(as_text=True)
    assert db.row_counts() == before  # nothing created

    # Whoever may see it still gets it: the owner, an ADMIN, a member the source wallet is shared with.
    admin = api.add_user(owner, "ADMIN")
    for user in (owner, admin):
        again = api.transfer(user, source, destination, 250, key="order-7")
        assert (again.status_code, again.json["id"]) == (200, transaction_id)
    shared = api.post(f"/wallets/{source}/members", owner, json={"user_id": member.id, "role": "VIEWER"})
    assert shared.status_code == 201, shared.json
    again = api.transfer(member, source, destination, 250, key="order-7")
    assert (again.status_code, again.json["id"]) == (200, transaction_id)


def test_the_general_intake_path_checks_visibility_on_replay_too(api, owners_transfer):
    from ledger.errors import InvalidRequest
    from ledger.identity import load_actor
    from ledger.intents.transfers import TransferRequest, submit_transfer
    from models.db import session_factory

    _owner, member, source, destination, _transaction_id = owners_transfer
    request = TransferRequest(uuid.UUID(source), uuid.UUID(destination), 250, "INR")
    with session_factory().begin() as session:
        actor = load_actor(session, uuid.UUID(member.id))
        with pytest.raises(InvalidRequest) as refused:
            submit_transfer(session, actor, request, idempotency_key="order-7")
        session.rollback()
    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"


# --- time to live ---------------------------------------------------------------------------------


def age_key(db, organization_id: str, key: str, hours: int) -> None:
    db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(hours => :hours)"
        " WHERE organization_id = :org AND key = :key",
        hours=hours,
        org=organization_id,
        key=key,
    )


def key_exists(db, organization_id: str, key: str) -> bool:
    return bool(
        db.scalar(
            "SELECT count(*) FROM idempotency_keys WHERE organization_id = :org AND key = :key",
            org=organization_id,
            key=key,
        )
    )


def test_an_expired_key_is_purged_and_then_makes_a_new_transaction(api, db):
    from settings import get_settings
    from tasks.idempotency import purge_idempotency_keys

    ttl_hours = get_settings().idempotency_key_ttl_hours
    assert ttl_hours >= 24
    owner = api.signup()
    source, destination = api.funded_wallet(owner, 1_000), api.create_wallet(owner)
    made = {key: api.transfer(owner, source, destination, 10, key=key).json["id"] for key in ("old", "day", "new")}
    for transaction_id in made.values():
        assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    age_key(db, owner.organization_id, "old", ttl_hours + 1)
    age_key(db, owner.organization_id, "day", ttl_hours - 1)

    assert purge_idempotency_keys() >= 1
    assert not key_exists(db, owner.organization_id, "old")
    assert key_exists(db, owner.organization_id, "day") and key_exists(db, owner.organization_id, "new")

    reused = api.transfer(owner, source, destination, 10, key="old")
    assert reused.status_code == 202 and reused.json["id"] != made["old"]
    for key in ("day", "new"):  # keys within their time to live still replay
        again = api.transfer(owner, source, destination, 10, key=key)
        assert (again.status_code, again.json["id"]) == (200, made[key])


def test_beat_purges_keys_on_the_maintenance_queue():
    import celeryconfig

    [entry] = [e for e in celeryconfig.beat_schedule.values() if e["task"] == "tasks.purge_idempotency_keys"]
    assert 0 < entry["schedule"] <= 3600
    assert celeryconfig.task_routes["tasks.purge_idempotency_keys"] == {"queue": "maintenance"}
    assert "tasks.idempotency" in celeryconfig.imports
