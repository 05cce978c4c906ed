"""`make chaos`'s crash storm at toy size: `make run` on a private Postgres and Redis, its worker
SIGKILLed every 1.5 s (main process or pool child), its supervisor and beat once each, while clients
post transfers. The API answers throughout, /health says the worker is down, and once the kills stop
every accepted intent settles by itself within a minute with every invariant holding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.scenarios import SCENARIOS, SMOKE
from chaos.stack import Stack, StackConfig

SEED = 6
pytestmark = pytest.mark.filterwarnings("ignore:.*XDG_RUNTIME_DIR")


@pytest.fixture(scope="module")
def servers() -> Iterator[Stack]:
    with Stack(StackConfig(app_processes=False)) as stack:
        yield stack


def test_a_crash_storm_takes_nothing_down_and_everything_settles_after_it(servers: Stack) -> None:
    result = SCENARIOS["crash_storm"](servers, SMOKE, SEED)
    broken = [f"{check.name}: {check.detail}" for check in result.checks if not check.ok]
    assert not broken, f"crash storm ({result.faults}) broke invariants: {broken}"
    kills = result.fault_detail["kills"]
    assert kills.get("main", 0) + kills.get("child", 0) >= 3
    assert kills.get("supervisor") == 1 and kills.get("beat") == 1
    assert result.intents > 0
    assert result.load["settle_wait_seconds"] <= SMOKE.storm_settle_seconds
