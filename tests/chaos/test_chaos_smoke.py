"""`make chaos` at toy sizes: every scenario runs its fault against a private stack (web, two workers,
a webhooks worker, beat, its own Postgres and Redis) and every invariant holds afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.scenarios import SCENARIOS, SMOKE, ScenarioResult
from chaos.stack import Stack, StackConfig

SEED = 6
# pgserver asks platformdirs for a runtime directory it does not use.
pytestmark = pytest.mark.filterwarnings("ignore:.*XDG_RUNTIME_DIR")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(StackConfig()) as private_stack:
        yield private_stack


def run(stack: Stack, name: str) -> ScenarioResult:
    result = SCENARIOS[name](stack, SMOKE, SEED)
    broken = [f"{check.name}: {check.detail}" for check in result.checks if not check.ok]
    assert not broken, f"{name} ({result.faults}) broke invariants: {broken}"
    assert result.intents > 0
    return result


def test_sigkilled_workers_lose_and_double_nothing(stack: Stack) -> None:
    result = run(stack, "kill_workers")
    assert sum(result.fault_detail["kills"].values()) == SMOKE.kills


def test_redis_outage_loses_no_acknowledged_intent(stack: Stack) -> None:
    result = run(stack, "redis_outage")
    assert result.fault_detail["redis_down_seconds"] >= SMOKE.redis_outage_seconds


def test_postgres_restart_fails_cleanly_and_recovers(stack: Stack) -> None:
    result = run(stack, "postgres_restart")
    assert result.fault_detail["restarts"] == SMOKE.postgres_restarts


def test_client_retries_with_one_key_have_one_effect(stack: Stack) -> None:
    result = run(stack, "client_retries")
    assert result.fault_detail["client_timeouts"] > 0 and result.fault_detail["keys_retried"] > 0


def test_holds_captured_voided_and_expired_under_sigkills_keep_every_invariant(stack: Stack) -> None:
    result = run(stack, "hold_lifecycle")
    assert sum(result.fault_detail["kills"].values()) == SMOKE.hold_kills
    names = {check.name for check in result.checks}
    assert {"held_amount_equals_open_holds", "captures_within_their_hold", "every_hold_ended_once"} <= names
    # Every way a hold ends happened: captured, voided, expired, and some are still open.
    assert {"hold CAPTURED", "hold VOIDED", "hold EXPIRED", "hold HELD"} <= set(result.outcomes), result.outcomes


def test_webhooks_survive_kills_and_a_redis_outage_each_received_and_verified(stack: Stack) -> None:
    result = run(stack, "webhook_outage")
    detail = result.fault_detail
    assert detail["kills"] == {"webhooks worker": 1, "settlement worker": 1}
    assert detail["redis_down_seconds"] >= SMOKE.webhook_outage_seconds
    # The receiver really failed some attempts (500s, and some answered only after the timeout).
    assert detail["receiver_failed"] > 0 and detail["receiver_hung"] > 0
    assert detail["received"] == detail["expected"] > result.intents  # every transfer: both endpoints
    assert detail["per_endpoint_expected"].keys() == {"/flaky/all", "/flaky/completed"}  # none for holds


def test_duplicate_and_redelivered_messages_post_once(stack: Stack) -> None:
    # Last: it restarts the workers with a short visibility timeout.
    result = run(stack, "duplicate_delivery")
    assert result.fault_detail["extra_copies_published"] == (SMOKE.duplicate_copies - 1) * result.intents
    assert result.fault_detail["messages_redelivered"] > 0
