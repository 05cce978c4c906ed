"""The eight chaos scenarios. Each one: a fresh organisation with funded wallets, a bounded load of
transfers through the API, one kind of fault injected while the load runs, a bounded wait for the
pipeline to settle by itself, then every invariant of chaos.invariants."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos import invariants, webhooks
from chaos.hold_load import plan_holds, run_hold_load
from chaos.invariants import Check
from chaos.load import Api, LoadResult, RetryPolicy, plan_transfers, run_load
from chaos.receiver import Behaviour, Receipt, ReceiverProcess
from chaos.stack import MakeRun, Stack, identities, signal_pids
from ops.processes import children_of, process_tree

SETTLE_POLL_SECONDS = 0.5
RECEIVED_TASK = re.compile(r"Task tasks\.settle_transfers\[([0-9a-f-]{36})\] received")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. The defaults are `make chaos`; SMOKE is the test suite's."""

    clients: int = 8
    wallets: int = 16
    deposit_minor: int = 200_000
    amount_max_minor: int = 20_000  # some transfers find too little money: FAILED is exercised too
    settle_timeout_seconds: float = 240.0

    kill_transfers: int = 2000
    kill_seconds: float = 100.0
    kills: int = 24

    redis_transfers: int = 900
    redis_before_seconds: float = 15.0
    redis_outage_seconds: float = 30.0
    redis_after_seconds: float = 15.0

    postgres_transfers: int = 800
    postgres_seconds: float = 45.0
    postgres_restarts: int = 2

    duplicate_transfers: int = 800
    duplicate_seconds: float = 40.0
    duplicate_copies: int = 3
    freezes: int = 2
    visibility_timeout_seconds: int = 5

    retry_keys: int = 600
    retry_seconds: float = 30.0

    storm_transfers: int = 3000
    storm_seconds: float = 90.0
    storm_kill_interval_seconds: float = 1.5
    # Once the kills stop, every accepted intent settles by itself within this long.
    storm_settle_seconds: float = 60.0

    hold_lives: int = 600  # holds placed, then captured, voided, expired or kept open
    hold_seconds: float = 60.0
    hold_kills: int = 12

    webhook_transfers: int = 2000
    webhook_before_seconds: float = 15.0
    webhook_outage_seconds: float = 30.0
    webhook_after_seconds: float = 15.0
    webhook_kills: int = 8  # alternately the webhooks worker and a settlement worker
    webhook_fail_ratio: float = 1 / 3  # of the receiver's answers: 500 ...
    webhook_hang_share: float = 0.1  # ... of which this share only after the sender's timeout
    # Once every event is relayed, every expected webhook is received within this long.
    webhook_converge_timeout_seconds: float = 180.0


SMOKE = Sizes(
    clients=4,
    wallets=8,
    settle_timeout_seconds=90.0,
    kill_transfers=150,
    kill_seconds=10.0,
    kills=3,
    redis_transfers=120,
    redis_before_seconds=3.0,
    redis_outage_seconds=5.0,
    redis_after_seconds=3.0,
    postgres_transfers=120,
    postgres_seconds=8.0,
    postgres_restarts=1,
    duplicate_transfers=100,
    duplicate_seconds=10.0,
    freezes=1,
    retry_keys=100,
    retry_seconds=6.0,
    storm_transfers=150,
    storm_seconds=12.0,
    hold_lives=36,
    hold_seconds=8.0,
    hold_kills=2,
    webhook_transfers=100,
    webhook_before_seconds=3.0,
    webhook_outage_seconds=5.0,
    webhook_after_seconds=3.0,
    webhook_kills=2,
    webhook_converge_timeout_seconds=60.0,
)


def sizes_from_env(base: Sizes) -> Sizes:
    """`base` with any field overridden by `CHAOS_<FIELD>` (e.g. CHAOS_WEBHOOK_TRANSFERS=500)."""
    changes: dict[str, Any] = {}
    for name, value in asdict(base).items():
        text = os.environ.get(f"CHAOS_{name.upper()}")
        if text is not None:
            changes[name] = type(value)(text)
    return replace(base, **changes)


@dataclass
class ScenarioResult:
    number: int
    name: str
    title: str
    faults: str
    intents: int
    load: dict[str, Any]
    outcomes: dict[str, int]
    checks: list[Check]
    seconds: float
    fault_detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "title": self.title,
            "faults": self.faults,
            "intents_accepted": self.intents,
            "load": self.load,
            "outcomes": self.outcomes,
            "checks": [check.as_dict() for check in self.checks],
            "checks_passed": sum(check.ok for check in self.checks),
            "checks_total": len(self.checks),
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "fault_detail": self.fault_detail,
        }


class Injector:
    """A fault thread running beside the load; `run(stop)` returns what it did."""

    def __init__(self, body: Callable[[threading.Event], dict[str, Any]]) -> None:
        self.body = body
        self.stop = threading.Event()
        self.detail: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="chaos-injector")

    def _run(self) -> None:
        try:
            self.detail = self.body(self.stop)
        except BaseException as error:  # reported by join()
            self.error = error

    def __enter__(self) -> Injector:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise RuntimeError("the fault injector failed") from self.error


def _at(started: float, offset_seconds: float, stop: threading.Event) -> None:
    stop.wait(max(started + offset_seconds - time.monotonic(), 0))


def _spread(duration_seconds: float, count: int, rng: random.Random) -> list[float]:
    """`count` moments inside (0, duration), one per equal slice, jittered within its slice."""
    slice_seconds = duration_seconds / count
    return [slice_seconds * (i + rng.uniform(0.2, 0.8)) for i in range(count)]


def _prepare(stack: Stack, label: str, sizes: Sizes) -> tuple[Api, list[str]]:
    api = Api(stack.api_url)
    api.signup(label)
    return api, api.funded_wallets(sizes.wallets, sizes.deposit_minor)


def _finish(
    stack: Stack,
    number: int,
    name: str,
    title: str,
    api: Api,
    load: LoadResult,
    sizes: Sizes,
    started: float,
    faults: str,
    detail: dict[str, Any],
) -> ScenarioResult:
    settled, waited = invariants.wait_until_settled(stack, api.organization_id, sizes.settle_timeout_seconds)
    checks = invariants.all_checks(stack, api.organization_id, load, settled=settled, waited=waited)
    return ScenarioResult(
        number=number,
        name=name,
        title=title,
        faults=faults,
        intents=len(load.accepted),
        load={**load.summary(), "settle_wait_seconds": round(waited, 1)},
        outcomes=invariants.outcome_counts(stack.database_url, api.organization_id),
        checks=checks,
        seconds=time.monotonic() - started,
        fault_detail=detail,
    )


# --- 1. SIGKILL workers ------------------------------------------------------------------------


def _kill_one(stack: Stack, rng: random.Random) -> str:
    """SIGKILL one pool child, or a whole worker (main process and its children), restarting it."""
    name = rng.choice(sorted(stack.workers))
    process = stack.workers[name]
    children = children_of(process.pid) if process.alive() else []
    if children and rng.random() < 0.5:
        signal_pids(identities([rng.choice(children)]), signal.SIGKILL)
        return "child"  # the worker's main process forks a replacement by itself
    stack.kill_worker(name)
    return "main"


def kill_workers(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    api, wallets = _prepare(stack, "kill", sizes)
    transfers = plan_transfers(rng, wallets, sizes.kill_transfers, sizes.amount_max_minor)

    def kill(stop: threading.Event) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        moments = []
        load_started = time.monotonic()
        for offset in _spread(sizes.kill_seconds, sizes.kills, rng):
            _at(load_started, offset, stop)
            kinds[_kill_one(stack, rng)] += 1
            moments.append(round(time.monotonic() - load_started, 1))
        return {"kills": dict(kinds), "at_seconds": moments}

    with Injector(kill) as injector:
        load = run_load(
            api, transfers, clients=sizes.clients, duration_seconds=sizes.kill_seconds, policy=RetryPolicy(), seed=seed
        )
    stack.wait_workers_ready()
    kinds = injector.detail["kills"]
    faults = f"{sum(kinds.values())} SIGKILLs ({kinds.get('child', 0)} pool child, {kinds.get('main', 0)} whole worker)"
    return _finish(stack, 1, "kill_workers", "SIGKILL workers", api, load, sizes, started, faults, injector.detail)


# --- 2. Redis outage ---------------------------------------------------------------------------


def redis_outage(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    api, wallets = _prepare(stack, "redis", sizes)
    transfers = plan_transfers(rng, wallets, sizes.redis_transfers, sizes.amount_max_minor)
    duration = sizes.redis_before_seconds + sizes.redis_outage_seconds + sizes.redis_after_seconds

    def outage(stop: threading.Event) -> dict[str, Any]:
        load_started = time.monotonic()
        _at(load_started, sizes.redis_before_seconds, stop)
        stack.crash_redis()
        down_at = time.monotonic()
        stop.wait(sizes.redis_outage_seconds)
        stack.start_redis()
        return {
            "redis_down_seconds": round(time.monotonic() - down_at, 1),
            "down_at_seconds": round(down_at - load_started, 1),
        }

    with Injector(outage) as injector:
        load = run_load(
            api, transfers, clients=sizes.clients, duration_seconds=duration, policy=RetryPolicy(), seed=seed
        )
    stack.wait_workers_ready()
    faults = f"Redis SIGKILLed, down {injector.detail['redis_down_seconds']} s"
    return _finish(stack, 2, "redis_outage", "Redis outage", api, load, sizes, started, faults, injector.detail)


# --- 3. Postgres restart -----------------------------------------------------------------------


def postgres_restart(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    api, wallets = _prepare(stack, "postgres", sizes)
    transfers = plan_transfers(rng, wallets, sizes.postgres_transfers, sizes.amount_max_minor)

    def restart(stop: threading.Event) -> dict[str, Any]:
        load_started = time.monotonic()
        took = []
        for offset in _spread(sizes.postgres_seconds, sizes.postgres_restarts, rng):
            _at(load_started, offset, stop)
            took.append(round(stack.restart_postgres(), 2))
        return {"restarts": len(took), "restart_seconds": took}

    with Injector(restart) as injector:
        load = run_load(
            api,
            transfers,
            clients=sizes.clients,
            duration_seconds=sizes.postgres_seconds,
            policy=RetryPolicy(),
            seed=seed,
        )
    detail = injector.detail
    faults = f"{detail['restarts']} fast restarts ({', '.join(f'{s} s' for s in detail['restart_seconds'])})"
    return _finish(stack, 3, "postgres_restart", "Postgres restart", api, load, sizes, started, faults, detail)


# --- 4. Duplicate delivery ---------------------------------------------------------------------


def _log_offsets(stack: Stack) -> dict[Path, int]:
    return {path: path.stat().st_size for path in (stack.root / "logs").glob("chaos*.log")}


def _received_since(stack: Stack, offsets: dict[Path, int]) -> Counter[str]:
    """How many times each settle message (by task id) was received by any worker since `offsets`."""
    received: Counter[str] = Counter()
    for path in (stack.root / "logs").glob("chaos*.log"):
        with open(path, "rb") as log:
            log.seek(offsets.get(path, 0))
            received.update(RECEIVED_TASK.findall(log.read().decode(errors="replace")))
    return received


def _freeze_pool(stack: Stack, rng: random.Random, seconds: float) -> str:
    """SIGSTOP one worker's pool processes past the visibility timeout. Its main process keeps taking
    messages (up to its prefetch) that nobody acknowledges, so the broker hands them out again once
    the timeout passes; then SIGCONT, and the pool runs its copies too."""
    name = rng.choice(sorted(stack.workers))
    main = stack.workers[name].pid
    frozen = identities([pid for pid in process_tree(main) if pid != main])
    signal_pids(frozen, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        signal_pids(frozen, signal.SIGCONT)
    return name


def duplicate_delivery(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    stack.restart_workers({"VAULTCRAFT_VISIBILITY_TIMEOUT_SECONDS": str(sizes.visibility_timeout_seconds)})
    api, wallets = _prepare(stack, "duplicates", sizes)
    transfers = plan_transfers(rng, wallets, sizes.duplicate_transfers, sizes.amount_max_minor)
    offsets = _log_offsets(stack)
    to_copy: queue.Queue[str | None] = queue.Queue()
    copies_published = 0

    def publish_copies() -> None:
        nonlocal copies_published
        while (transaction_id := to_copy.get()) is not None:
            for _ in range(sizes.duplicate_copies - 1):  # the API published the first
                stack.publish_settle([transaction_id])
                copies_published += 1

    def freeze(stop: threading.Event) -> dict[str, Any]:
        load_started = time.monotonic()
        frozen = []
        for offset in _spread(sizes.duplicate_seconds, sizes.freezes, rng):
            _at(load_started, offset, stop)
            frozen.append(_freeze_pool(stack, rng, sizes.visibility_timeout_seconds + 4))
        return {"frozen_workers": frozen}

    publisher = threading.Thread(target=publish_copies, name="chaos-duplicates")
    publisher.start()
    try:
        with Injector(freeze) as injector:
            load = run_load(
                api,
                transfers,
                clients=sizes.clients,
                duration_seconds=sizes.duplicate_seconds,
                policy=RetryPolicy(),
                seed=seed,
                on_accepted=to_copy.put,
            )
    finally:
        to_copy.put(None)
        publisher.join()
    result = _finish(stack, 4, "duplicate_delivery", "Duplicate delivery", api, load, sizes, started, "", {})
    received = _received_since(stack, offsets)
    redelivered = sum(1 for count in received.values() if count > 1)
    result.fault_detail = {
        **injector.detail,
        "visibility_timeout_seconds": sizes.visibility_timeout_seconds,
        "extra_copies_published": copies_published,
        "settle_messages_received": sum(received.values()),
        "messages_redelivered": redelivered,
    }
    result.faults = (
        f"each settle message x{sizes.duplicate_copies} ({copies_published} extra); "
        f"{len(injector.detail['frozen_workers'])} worker pool(s) frozen past a {sizes.visibility_timeout_seconds} s "
        f"visibility timeout: {redelivered} messages redelivered"
    )
    result.checks.append(
        Check(
            "redelivery_forced",
            redelivered > 0,
            f"{redelivered} messages received twice by the workers after the visibility timeout",
        )
    )
    return result


# --- 5. Client timeouts and retries ------------------------------------------------------------


def client_retries(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    api, wallets = _prepare(stack, "retries", sizes)
    transfers = plan_transfers(rng, wallets, sizes.retry_keys, sizes.amount_max_minor)
    # Most first attempts give up before the answer comes (the request still runs on the server);
    # the same key is then sent again with more patience. The web answers a transfer in a few
    # milliseconds, so the first timeout is shorter still.
    policy = RetryPolicy(
        attempts_max=10,
        read_timeout_seconds=0.001,
        read_timeout_jitter_seconds=0.01,
        read_timeout_growth=3.0,
        read_timeout_seconds_max=10.0,
    )
    load = run_load(
        api, transfers, clients=sizes.clients, duration_seconds=sizes.retry_seconds, policy=policy, seed=seed
    )
    timeouts = load.answers.get("timeout", 0)
    faults = f"{timeouts} client timeouts, {load.retried_keys} keys retried"
    detail = {"client_timeouts": timeouts, "keys_retried": load.retried_keys}
    return _finish(stack, 5, "client_retries", "Client timeouts + retries", api, load, sizes, started, faults, detail)


# --- 6. Crash storm under make run -------------------------------------------------------------


def _kill_worker_process(run: MakeRun, rng: random.Random) -> str | None:
    """SIGKILL the worker's main process or one of its pool children, whichever is up right now."""
    mains = run.main_of("worker@%h")
    if not mains:
        return None  # its supervisor is waiting out a backoff
    children = [pid for pid in run.find("worker@%h") if pid not in mains]
    if children and rng.random() < 0.5:
        signal_pids(identities([rng.choice(children)]), signal.SIGKILL)
        return "child"
    signal_pids(identities(mains), signal.SIGKILL)
    return "main"


def _kill_once(run: MakeRun, what: str) -> str | None:
    """SIGKILL the worker's supervisor (ops.respawn) or beat's main process, once."""
    pids = run.find("worker@%h", supervisor=True) if what == "supervisor" else run.main_of("beat")
    signal_pids(identities(pids), signal.SIGKILL)
    return what if pids else None


def _storm_checks(run: MakeRun, detail: dict[str, Any]) -> list[Check]:
    polls = detail["health_polls"]
    final = run.health()
    worker_back = final is not None and final[1].get("worker", {}).get("status") == "ok"
    missing = [name for name in ("web.serve", "worker", "beat", "flower") if not run.main_of(name)]
    return [
        Check(
            "api_answered_through_the_storm",
            polls["answered_200"] == polls["total"],
            f"/health answered 200 {polls['answered_200']} of {polls['total']} times during the kills",
        ),
        Check(
            "health_reported_the_worker_down",
            polls["worker_down"] > 0,
            f"degraded, worker down in {polls['worker_down']} polls (longest silence "
            f"{polls['longest_silence_seconds']} s)",
        ),
        Check(
            "every_process_back",
            worker_back and not missing,
            f"worker answering again: {worker_back}; missing: {missing or 'none'}",
        ),
    ]


def crash_storm(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    with stack.make_run() as run:
        api = Api(run.api_url)
        api.signup("storm")
        wallets = api.funded_wallets(sizes.wallets, sizes.deposit_minor)
        transfers = plan_transfers(rng, wallets, sizes.storm_transfers, sizes.amount_max_minor)

        def storm(stop: threading.Event) -> dict[str, Any]:
            kills: Counter[str] = Counter()
            polls = {"total": 0, "answered_200": 0, "worker_down": 0, "longest_silence_seconds": 0.0}
            once = {sizes.storm_seconds / 3: "supervisor", 2 * sizes.storm_seconds / 3: "beat"}
            load_started = time.monotonic()
            while not stop.wait(sizes.storm_kill_interval_seconds):
                elapsed = time.monotonic() - load_started
                for moment, what in list(once.items()):
                    if elapsed >= moment and (done := _kill_once(run, what)):
                        kills[done] += 1
                        del once[moment]
                if (kind := _kill_worker_process(run, rng)) is not None:
                    kills[kind] += 1
                answer = run.health()
                polls["total"] += 1
                if answer is not None and answer[0] == 200:
                    polls["answered_200"] += 1
                    worker = answer[1].get("worker", {})
                    if answer[1].get("status") == "degraded" and worker.get("status") == "down":
                        polls["worker_down"] += 1
                        silence = worker.get("last_seen_seconds_ago") or 0.0
                        polls["longest_silence_seconds"] = max(polls["longest_silence_seconds"], silence)
            return {"kills": dict(kills), "health_polls": polls}

        with Injector(storm) as injector:
            load = run_load(
                api,
                transfers,
                clients=sizes.clients,
                duration_seconds=sizes.storm_seconds,
                policy=RetryPolicy(),
                seed=seed,
            )
        storm_sizes = replace(sizes, settle_timeout_seconds=sizes.storm_settle_seconds)
        kills = injector.detail["kills"]
        faults = (
            f"SIGKILL every {sizes.storm_kill_interval_seconds} s under make run: {kills.get('main', 0)} worker main, "
            f"{kills.get('child', 0)} pool child, {kills.get('supervisor', 0)} its supervisor, "
            f"{kills.get('beat', 0)} beat"
        )
        detail = injector.detail
        result = _finish(stack, 6, "crash_storm", "Crash storm", api, load, storm_sizes, started, faults, detail)
        result.checks.extend(_storm_checks(run, injector.detail))
    result.seconds = time.monotonic() - started
    return result


# --- 7. SIGKILL workers during the lives of holds -------------------------------------------------


def _wait_holds_settled(stack: Stack, organization_id: str, timeout_seconds: float) -> tuple[bool, float]:
    """No PENDING intent, and no hold past its expiry still HELD (expiry caught up), within the bound."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_seconds:
        url = stack.database_url
        if (
            invariants.pending_count(url, organization_id) == 0
            and invariants.due_holds_count(url, organization_id) == 0
        ):
            return True, time.monotonic() - started
        time.sleep(SETTLE_POLL_SECONDS)
    return False, time.monotonic() - started


def hold_lifecycle(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    api, wallets = _prepare(stack, "holds", sizes)
    plans = plan_holds(rng, wallets, sizes.hold_lives, sizes.amount_max_minor)

    def kill(stop: threading.Event) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        load_started = time.monotonic()
        for offset in _spread(sizes.hold_seconds, sizes.hold_kills, rng):
            _at(load_started, offset, stop)
            kinds[_kill_one(stack, rng)] += 1
        return {"kills": dict(kinds)}

    with Injector(kill) as injector:
        load = run_hold_load(
            api, plans, clients=sizes.clients, duration_seconds=sizes.hold_seconds, policy=RetryPolicy(), seed=seed
        )
    stack.wait_workers_ready()
    settled, waited = _wait_holds_settled(stack, api.organization_id, sizes.settle_timeout_seconds)
    url = stack.database_url
    checks = [
        Check("settled_by_itself", settled, f"no PENDING intent, no overdue HELD hold {waited:.1f} s after the load"),
        *invariants.acknowledged_checks(url, load),
        *invariants.scoped_checks(url, api.organization_id),
        *invariants.idempotency_checks(url, api.organization_id, load, types=("HOLD", "CAPTURE")),
        invariants.answers_check(load),
        invariants.held_amount_check(url),
        *invariants.hold_checks(url, api.organization_id),
        *invariants.ledger_checks(url),
        invariants.reconciliation_check(stack),
    ]
    kinds = injector.detail["kills"]
    return ScenarioResult(
        number=7,
        name="hold_lifecycle",
        title="SIGKILL workers during holds",
        faults=f"{sum(kinds.values())} SIGKILLs ({kinds.get('child', 0)} pool child, {kinds.get('main', 0)} whole "
        "worker) while holds are placed, captured, voided and expire",
        intents=len(load.accepted),
        load={**load.summary(), "settle_wait_seconds": round(waited, 1)},
        outcomes=invariants.hold_outcomes(url, api.organization_id),
        checks=checks,
        seconds=time.monotonic() - started,
        fault_detail=injector.detail,
    )


# --- 8. Webhooks through worker kills and a Redis outage ------------------------------------------


def webhook_outage(stack: Stack, sizes: Sizes, seed: int) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(seed)
    behaviour = Behaviour(
        sizes.webhook_fail_ratio, sizes.webhook_hang_share, stack.config.webhook_timeout_seconds + 0.5
    )
    with ReceiverProcess(behaviour, seed) as receiver:
        api = Api(stack.api_url)
        api.signup("webhooks")
        endpoint_ids = webhooks.create_endpoints(api, receiver)
        wallets = api.funded_wallets(sizes.wallets, sizes.deposit_minor)
        transfers = plan_transfers(rng, wallets, sizes.webhook_transfers, sizes.amount_max_minor)
        duration = sizes.webhook_before_seconds + sizes.webhook_outage_seconds + sizes.webhook_after_seconds

        def inject(stop: threading.Event) -> dict[str, Any]:
            done: Counter[str] = Counter()
            load_started = time.monotonic()
            down_at = up_at = load_started
            for moment, action in webhooks.timeline(
                sizes.webhook_before_seconds,
                sizes.webhook_outage_seconds,
                sizes.webhook_after_seconds,
                sizes.webhook_kills,
                rng,
            ):
                _at(load_started, moment, stop)
                if action == "kill_webhooks":
                    stack.kill_webhooks()
                elif action == "kill_worker":
                    _kill_one(stack, rng)
                elif action == "redis_down":
                    stack.crash_redis()
                    down_at = time.monotonic()
                else:
                    stack.start_redis()
                    up_at = time.monotonic()
                done[action] += 1
            return {
                "kills": {"webhooks worker": done["kill_webhooks"], "settlement worker": done["kill_worker"]},
                "redis_down_seconds": round(up_at - down_at, 1),
                "redis_back_at": time.time() - (time.monotonic() - up_at),
            }

        with Injector(inject) as injector:
            load = run_load(
                api, transfers, clients=sizes.clients, duration_seconds=duration, policy=RetryPolicy(), seed=seed
            )
        load_ended_at = time.time()
        stack.wait_workers_ready([*stack.workers, "webhooks"])
        settled, waited = invariants.wait_until_settled(stack, api.organization_id, sizes.settle_timeout_seconds)
        relayed = webhooks.wait_relayed(stack.database_url, api.organization_id, sizes.settle_timeout_seconds)
        events = webhooks.events_of(stack.database_url, api.organization_id)
        expected = webhooks.expected_pairs(events)
        webhooks.wait_received(receiver, expected, sizes.webhook_converge_timeout_seconds)
        report = receiver.report()
    receipts = [Receipt(*row) for row in report["posts"]]
    checks, figures = webhooks.webhook_checks(
        stack, receipts, report["cut_off"], events, expected, list(endpoint_ids.values()), relayed
    )
    detail = {**injector.detail, **figures}
    last = max((t for key, t in webhooks.first_success(receipts).items() if key in expected), default=load_ended_at)
    detail["converged_seconds_after_load"] = round(max(last - load_ended_at, 0.0), 1)
    detail["converged_seconds_after_redis_back"] = round(max(last - detail.pop("redis_back_at"), 0.0), 1)
    kills = injector.detail["kills"]
    faults = (
        f"{sum(kills.values())} SIGKILLs ({kills['webhooks worker']} webhooks worker, "
        f"{kills['settlement worker']} settlement), Redis down {detail['redis_down_seconds']} s; receiver "
        f"failed {figures['receiver_failed']} of {figures['posts']} POSTs ({figures['receiver_hung']} past the "
        f"timeout; {figures['posts_cut_off']} cut off by a kill): "
        f"webhooks received {figures['received']}/{figures['expected']}, "
        f"{figures['duplicates']} duplicates, converged {detail['converged_seconds_after_load']} s after the load"
    )
    checks = [*invariants.all_checks(stack, api.organization_id, load, settled=settled, waited=waited), *checks]
    return ScenarioResult(
        number=8,
        name="webhook_outage",
        title="Webhooks through kills and a Redis outage",
        faults=faults,
        intents=len(load.accepted),
        load={**load.summary(), "settle_wait_seconds": round(waited, 1)},
        outcomes=invariants.outcome_counts(stack.database_url, api.organization_id),
        checks=checks,
        seconds=time.monotonic() - started,
        fault_detail=detail,
    )


# Run order: duplicate delivery last, since it restarts the workers with a short visibility timeout.
SCENARIOS: dict[str, Callable[[Stack, Sizes, int], ScenarioResult]] = {
    "kill_workers": kill_workers,
    "redis_outage": redis_outage,
    "postgres_restart": postgres_restart,
    "client_retries": client_retries,
    "hold_lifecycle": hold_lifecycle,
    "webhook_outage": webhook_outage,
    "duplicate_delivery": duplicate_delivery,
    "crash_storm": crash_storm,
}
