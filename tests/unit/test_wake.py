"""Debounced wake-ups (tasks/wake.py): one message while an earlier one has not started, never none."""

from __future__ import annotations

import fakeredis
import pytest
import redis

import tasks.wake
from tasks.wake import Wake


class RecordingTask:
    def __init__(self, fail: bool = False) -> None:
        self.published = 0
        self.fail = fail

    def apply_async(self, **_options: object) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published += 1


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis()
    monkeypatch.setattr(tasks.wake, "redis_client", lambda: client)
    return client


def test_one_message_until_the_task_starts_then_one_more(server):
    wake, task = Wake(key="k", ttl_ms=60_000), RecordingTask()
    for _ in range(50):
        assert wake.request(task)
    assert task.published == 1
    wake.started()  # the task deletes the key before it reads: later producers need a new wake
    assert wake.request(task) and wake.request(task)
    assert task.published == 2


def test_a_lost_message_stalls_producers_no_longer_than_the_key_lives(server):
    wake, task = Wake(key="k", ttl_ms=60_000), RecordingTask()
    wake.request(task)
    server.delete("k")  # what the key's expiry does once ttl_ms has passed
    wake.request(task)
    assert task.published == 2
    assert 0 < server.pttl("k") <= 60_000


def test_a_refused_publish_reports_false_and_frees_the_key(server):
    wake = Wake(key="k", ttl_ms=60_000)
    assert wake.request(RecordingTask(fail=True)) is False
    assert server.get("k") is None  # the next producer publishes instead of waiting on a message that never left
    task = RecordingTask()
    assert wake.request(task) and task.published == 1


def test_without_redis_every_request_publishes(monkeypatch):
    class Down:
        def set(self, *args: object, **kwargs: object) -> None:
            raise redis.ConnectionError("down")

        def delete(self, *args: object) -> None:
            raise redis.ConnectionError("down")

    monkeypatch.setattr(tasks.wake, "redis_client", lambda: Down())
    wake, task = Wake(key="k", ttl_ms=1000), RecordingTask()
    assert wake.request(task) and wake.request(task)
    assert task.published == 2
    wake.started()  # cannot clear the key: it lapses on its own, and nothing raises


def test_an_api_intent_wakes_a_drain_that_waits_out_the_gather_window(server, monkeypatch):
    import tasks.settlement
    from settings import get_settings

    options: list[dict[str, object]] = []
    monkeypatch.setattr(tasks.settlement.drain_pending, "apply_async", lambda **kw: options.append(kw))
    for _ in range(20):
        assert tasks.settlement.settle_soon([])
    gather_seconds = get_settings().settle_gather_ms / 1000
    assert options == [{"retry": False, "countdown": gather_seconds}]  # one drain for the whole window
    # The key outlives the window, so intents accepted while the drain waits publish nothing more.
    assert server.pttl(tasks.settlement.SETTLE_WAKE.key) > get_settings().settle_gather_ms


def test_commits_that_write_events_wake_one_relay_that_waits_out_its_gather_window(server, monkeypatch):
    import tasks.outbox

    options: list[dict[str, object]] = []
    monkeypatch.setattr(tasks.outbox.relay_events, "apply_async", lambda **kw: options.append(kw))
    for _ in range(20):
        tasks.outbox.wake_relay()
    assert options == [{"retry": False, "countdown": tasks.outbox.RELAY_GATHER_SECONDS}]
    assert server.pttl(tasks.outbox.RELAY_WAKE.key) > 1000 * tasks.outbox.RELAY_GATHER_SECONDS
