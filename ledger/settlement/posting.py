"""Settling PENDING intents into the double-entry ledger, many at a time, in one database transaction.

    claim intents (FOR UPDATE SKIP LOCKED)  →  lock their wallets in id order (FOR UPDATE)
    →  plan every posting in memory, in intent order (pure)  →  write entries, balances, outcomes.

Each intent still succeeds or fails on its own: it sees the balances the intents before it left,
gets its own balance_after and wallet versions, and a failure writes no entry. The caller commits.

A hot wallet (a merchant, a treasury) that the batch only credits is locked last (`late_wallets`):
every batch names it, so the time it is held, from its lock to the commit, bounds how many batches
settle per second. Whether a credit succeeds never depends on the balance it lands on, so the batch
plans against the wallet's unlocked state, writes everything else, then locks it, moves its entries'
balance_after and versions onto the balance it finds, and writes only its own entries and the events.

A batch is 1,000 intents, so its statements carry arrays of thousands of ids. They go to Postgres
as binary parameters (`%(name)b`, written for the driver): psycopg sends a list in text format
otherwise, and printing and parsing the text costs more than the statement's own work.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, func, select
from sqlalchemy.orm import Session

from ledger import analytics, monitors
from ledger.integrity import events
from ledger.intents import p2p, refunds
from ledger.settlement import hold_outcomes, order, review, risk
from ledger.settlement.plan import Intent, OrgCurrency, Plan, PlannedEntry, WalletState
from models import Direction, TransactionStatus, TransactionType, WalletType
from models.ids import new_copy_id

if TYPE_CHECKING:
    from ledger.clearing.routing import Routes

_SYSTEM = WalletType.SYSTEM.value
_HOLD = TransactionType.HOLD.value
_DEBIT = Direction.DEBIT.value
_CREDIT = Direction.CREDIT.value


@dataclass(frozen=True)
class SettleOutcome:
    completed: int
    failed: int
    skipped: int
    # Claimed but left PENDING for a later batch: another batch held their wallets (`lock_for`), or
    # an older intent on their source wallet is not settled yet (`ledger.settlement.order`).
    deferred: int = 0
    # Stopped by a fraud rule (ledger/settlement/review.py): IN_REVIEW, neither completed nor failed.
    in_review: int = 0
    # The organisation whose intents a drain's claim took (`settle_oldest_pending`); None otherwise.
    organization_id: uuid.UUID | None = None

    @property
    def decided(self) -> int:
        """The claimed intents that left PENDING."""
        return self.completed + self.failed + self.in_review


@dataclass
class Claim:
    """Intents locked for settling, in the order they apply, with what settling them needs to know."""

    intents: list[Intent] = field(default_factory=list)
    # Each wallet they name: its organisation and currency (neither ever changes, so no lock is needed).
    owners: dict[uuid.UUID, OrgCurrency] = field(default_factory=dict)
    # The intents that pay a P2P request (ledger/intents/p2p.py), which follows its transaction's outcome.
    paying_requests: list[uuid.UUID] = field(default_factory=list)
    # When each intent was accepted: with its id, its place in its wallets' order (ledger/settlement/order.py).
    accepted_at: dict[uuid.UUID, datetime] = field(default_factory=dict)
    # The SYSTEM wallets among those named (treasuries, clearing wallets): they may go negative.
    system_wallets: set[uuid.UUID] = field(default_factory=set)
    # The intents' organisation: a drain's claim takes one organisation's (`_LOCK_OLDEST`).
    organization_id: uuid.UUID | None = None


def execute(session: Session, statement: str, parameters: Mapping[str, Any]) -> CursorResult[Any]:
    """Run SQL written for the driver (`%(name)b` binary parameters) in the session's transaction."""
    return session.connection().exec_driver_sql(statement, dict(parameters))


# The claimed intents, first accepted first. They come from `{locked}`: transactions rows locked FOR
# NO KEY UPDATE SKIP LOCKED. A skipped intent is being settled by another worker; if it crashes, its
# transaction rolls back and the message is redelivered or the sweep re-enqueues it.
_CLAIM = """
    WITH t AS MATERIALIZED ({locked})
    SELECT id, source_wallet_id, destination_wallet_id, amount, currency,
           coalesce(metadata ? '{request_key}', false), status, created_at, parked_at IS NOT NULL, type, hold_id,
           review_decision IS NOT NULL, organization_id
      FROM t
     ORDER BY created_at, id
"""
# The claimed intents' wallets: organisation and currency (neither ever changes, so no lock), each
# wallet read once, by primary key. A separate statement, not a join in the claim: the claim's row
# count is unknown to the planner (statistics gathered while little was PENDING say a row or two),
# and on that estimate it joined the claimed rows to their wallets by comparing every pair, 1.8
# million comparisons and 0.45 s for a claim of 1,000 (issue 3 bench, a backlog after a quiet ANALYZE).
_OWNERS = """
    SELECT id, organization_id, currency, type FROM wallets
     WHERE id = ANY(%(ids)b)
"""
_PENDING_COLUMNS = (
    "id, source_wallet_id, destination_wallet_id, amount, currency, metadata, created_at, parked_at, type, hold_id,"
    " review_decision, organization_id"
)
# The named intents are found by primary key alone. Only those still PENDING are locked: a final
# intent locked here (a duplicate message's, a sweep's that settled meanwhile) would be held to the
# batch's commit, while the batch waits for wallets, and a settlement batch that holds those wallets
# and marks that transfer settled waits for it: a deadlock (see `lock_wallets` for the order). The
# status is tested as an expression, not `status = 'PENDING'`: that condition matches the partial
# index ix_transactions_pending, and on statistics gathered while nothing was PENDING the planner
# read that whole index instead of probing the primary key (the issue 3 bench after an ANALYZE:
# 160 intents/s instead of thousands). Rows the condition refuses are not locked.
_LOCK_BY_ID = f"""
    SELECT {_PENDING_COLUMNS}, status FROM transactions
     WHERE id = ANY(%(ids)b) AND status || '' = '{TransactionStatus.PENDING}' AND parked_at IS NULL
       FOR NO KEY UPDATE SKIP LOCKED
"""
# As `ledger.settlement.sweep` finds them: the oldest by created_at, through ix_transactions_pending (the
# status a literal: a partial index only matches a constant). Ties by id, as the per-wallet order
# ranks intents (ledger/settlement/order.py): one statement accepts a whole bulk request at one
# created_at, and a claim that cut through such a tie in any other order deferred each intent with an
# older sibling left outside, then claimed the same rows again. Postgres sorts only within the tie.
#
# One organisation's intents only: the organisation of the oldest PENDING intent no one else holds
# (found and locked by the sub-select, so two drainers never pick an organisation through the same
# row), and the next claim takes the next one. Every statement of a batch then reads and writes one
# organisation's rows, except what a cross-organisation intent names on the other side by design
# (its receiver and the clearing wallets): what distributing the tables by organisation needs
# (docs/scaling.md, tests/functional/test_single_organisation.py). Per-wallet order is unchanged:
# `ledger.settlement.order` never relied on what else a batch holds. `passed`: organisations a drain
# has emptied with a short batch (tasks/settlement.py), so that it goes on to others' intents and
# leaves those organisations' new arrivals for the next wake to gather.
_LOCK_OLDEST = f"""
    SELECT {_PENDING_COLUMNS}, status FROM transactions
     WHERE status = '{TransactionStatus.PENDING}' AND created_at < now() - %(min_age)b
       AND parked_at IS NULL
       AND organization_id = (
           SELECT organization_id FROM transactions
            WHERE status = '{TransactionStatus.PENDING}' AND created_at < now() - %(min_age)b
              AND parked_at IS NULL AND organization_id <> ALL(%(passed)b::uuid[])
            ORDER BY created_at, id
            LIMIT 1
              FOR NO KEY UPDATE SKIP LOCKED)
     ORDER BY created_at, id
     LIMIT %(limit)b
       FOR NO KEY UPDATE SKIP LOCKED
"""
_CLAIM_BY_ID = _CLAIM.format(locked=_LOCK_BY_ID, request_key=p2p.REQUEST_METADATA_KEY)
_CLAIM_OLDEST = _CLAIM.format(locked=_LOCK_OLDEST, request_key=p2p.REQUEST_METADATA_KEY)


def _claim(session: Session, statement: str, parameters: Mapping[str, Any]) -> Claim:
    claim = Claim()
    wallet_ids = set()
    for row in execute(session, statement, parameters).all():
        if row[6] != TransactionStatus.PENDING or row[8]:
            continue  # final already (settled by an earlier delivery, or cancelled), or parked
        # A PENDING intent with a review decision was approved (ledger/intents/review.py).
        intent = Intent(row[0], row[1], row[2], row[3], row[4], row[9], row[10], row[11])
        claim.intents.append(intent)
        claim.accepted_at[intent.id] = row[7]
        claim.organization_id = row[12]
        wallet_ids.add(intent.source_wallet_id)
        wallet_ids.add(intent.destination_wallet_id)
        if row[5]:
            claim.paying_requests.append(intent.id)
    if wallet_ids:
        owners = execute(session, _OWNERS, {"ids": list(wallet_ids)}).all()
        claim.owners = {row[0]: (row[1], row[2]) for row in owners}
        claim.system_wallets = {row[0] for row in owners if row[3] == _SYSTEM}
    return claim


def claim_pending(session: Session, transaction_ids: Sequence[uuid.UUID]) -> Claim:
    """Lock the given intents that are still PENDING; skip those another worker holds right now."""
    return _claim(session, _CLAIM_BY_ID, {"ids": list(transaction_ids)})


def claim_oldest(session: Session, *, limit: int, min_age: timedelta, passed: Sequence[uuid.UUID] = ()) -> Claim:
    """Lock up to `limit` of the oldest PENDING intents at least `min_age` old that no one else holds,
    all of one organisation, not one of those `passed` over."""
    return _claim(session, _CLAIM_OLDEST, {"limit": limit, "min_age": min_age, "passed": list(passed)})


_LOCK_WALLETS = """
    SELECT id, type, status, currency, balance, version, held_amount FROM wallets
     WHERE id = ANY(%(ids)b)
     ORDER BY id
       FOR NO KEY UPDATE
"""


def lock_wallets(session: Session, wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, WalletState]:
    """Row-lock these wallets in one global order (by id), so two calls never deadlock each other.
    (A batch's late wallets are a second call, after its other writes: see `late_wallets`.)

    The global lock order, for every unit of work that settles money:
      1. transactions rows: the intents it settles (SKIP LOCKED, PENDING ones only), or a
         settlement batch's obligations together with the transfers they belong to;
      2. wallets, in id order, in one statement;
      3. last, a settle batch's late wallets: user wallets it only credits, at least
         LATE_LOCK_CREDITS_MIN times. Never a SYSTEM wallet (treasury, clearing): deposits and
         settlement batches lock those in id order, and a wallet locked last by one unit of work
         and in id order by another is a deadlock. The one cycle left is between two settle
         batches, when one debits a user wallet that the other locks last (Postgres breaks it and
         the loser retries: tests/functional/test_late_lock.py).

    NO KEY UPDATE, not UPDATE: only balance and version change, so the KEY SHARE locks that
    foreign-key checks take (an API inserting an intent naming two wallets, in its own order)
    never wait on a batch; with FOR UPDATE the two deadlock.
    """
    rows = execute(session, _LOCK_WALLETS, {"ids": list(set(wallet_ids))}).all()
    return {row[0]: WalletState(*row) for row in rows}


# A batch goes ahead with the intents whose wallets no other batch holds, and leaves the rest for a
# later batch, when at least this share of its intents can go: two batches over many wallets then
# settle side by side instead of one waiting out the other's commit. Below it (a hot wallet in most
# intents), the batch waits for the wallets as before: a later batch would find them held as well.
GO_AHEAD_SHARE_MIN = 0.5

_PROBE_WALLETS = """
    SELECT id FROM wallets
     WHERE id = ANY(%(ids)b)
       FOR NO KEY UPDATE SKIP LOCKED
"""


def _wallets_of(intent: Intent, routes: Routes) -> tuple[uuid.UUID, ...]:
    if intent.type == _HOLD:
        return (intent.source_wallet_id,)  # a hold moves nothing on its destination (`unlocked_destinations`)
    route = routes.by_intent.get(intent.id)
    own = (intent.source_wallet_id, intent.destination_wallet_id)
    return own if route is None else own + route.clearing_wallet_ids


def _free_wallets(session: Session, wallet_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """The wallets no other transaction holds right now. Found by locking them with SKIP LOCKED in a
    savepoint that is then rolled back: a row lock taken in a subtransaction and kept would make
    every later update of the row write a MultiXact, and the locks that count come next, in id order."""
    savepoint = session.begin_nested()
    try:
        return {row[0] for row in execute(session, _PROBE_WALLETS, {"ids": list(wallet_ids)})}
    finally:
        savepoint.rollback()


def lock_for(
    session: Session,
    intents: list[Intent],
    routes: Routes,
    late: frozenset[uuid.UUID] = frozenset(),
    may_go_negative: frozenset[uuid.UUID] | set[uuid.UUID] = frozenset(),
) -> tuple[list[Intent], dict[uuid.UUID, WalletState]]:
    """The intents that go ahead now, and their wallets but the `late` ones, locked (in id order,
    waiting if need be).

    Every intent goes ahead unless another batch holds some of their wallets; then those whose
    wallets are all free go ahead, if they are at least GO_AHEAD_SHARE_MIN of the batch, and an
    intent behind one left for later on its source wallet is left for later too (`ledger.settlement.order`).
    """
    needs = {intent.id: [w for w in _wallets_of(intent, routes) if w not in late] for intent in intents}
    wanted = {w for wallets in needs.values() for w in wallets}
    free = _free_wallets(session, wanted)
    if len(free) < len(wanted):
        held = {i.id for i in intents if not all(w in free for w in needs[i.id])}
        ready = order.in_order(intents, held, may_go_negative)
        if len(ready) >= GO_AHEAD_SHARE_MIN * len(intents):
            intents = ready
            wanted = {w for i in ready for w in needs[i.id]}
    return intents, lock_wallets(session, wanted)


# A wallet is locked last when the batch credits it at least this often and never debits it: a hot
# wallet, named by most of the batch. Below it, an ordinary wallet is locked with the others, in id
# order: a batch that locks a wallet last and one that locks it in order can deadlock (Postgres
# breaks the tie within deadlock_timeout and the batch is retried), so the rule is kept to the
# wallets where holding them for less time pays.
LATE_LOCK_CREDITS_MIN = 16


class LateWalletChanged(Exception):
    """A wallet planned against unlocked changed status or type before it was locked: plan again."""


def late_wallets(
    intents: Iterable[Intent], routes: Routes, system_wallets: Iterable[uuid.UUID] = ()
) -> frozenset[uuid.UUID]:
    """The wallets this batch only credits, at least LATE_LOCK_CREDITS_MIN times. Never a SYSTEM
    wallet: a treasury credited by many withdrawals is still locked in id order, because deposits
    and settlement batches lock it in id order (see `lock_wallets`); clearing wallets, which
    obligations debit and credit, are locked in order anyway."""
    credits = Counter(i.destination_wallet_id for i in intents if i.type != _HOLD)
    debited = {i.source_wallet_id for i in intents} | set(routes.wallet_ids) | set(system_wallets)
    return frozenset(w for w, n in credits.items() if n >= LATE_LOCK_CREDITS_MIN and w not in debited)


_READ_WALLETS = """
    SELECT id, type, status, currency, balance, version, held_amount FROM wallets
     WHERE id = ANY(%(ids)b)
"""


def unlocked_destinations(intents: Iterable[Intent], locked: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The wallets the batch names only as a HOLD intent's destination: read, never locked.

    A hold reserves its amount on its source and moves nothing on its destination, whose status
    and currency it only checks (each capture checks them again under the lock). Locking it made
    every batch of holds towards one merchant wait for the one before it to commit, as transfers
    would, with nothing to write there."""
    named = {i.destination_wallet_id for i in intents if i.type == _HOLD}
    return named - set(locked)


def read_wallets(session: Session, wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, WalletState]:
    """Wallets as they stand, without a lock: what a batch plans a late wallet's credits against."""
    ids = list(wallet_ids)
    if not ids:
        return {}
    rows = execute(session, _READ_WALLETS, {"ids": ids}).all()
    return {row[0]: WalletState(*row) for row in rows}


Shift = tuple[int, int, int]  # what others did to a wallet between two reads: balance, versions, held amount


def lock_late(session: Session, seen: Mapping[uuid.UUID, WalletState]) -> dict[uuid.UUID, Shift]:
    """Lock the late wallets, and say how far each moved since it was `seen` (read unlocked).

    Only credits were planned against them, so no outcome depends on their balance; each outcome
    depends on their status and type, which must still be what the plan saw.
    """
    locked = lock_wallets(session, seen.keys())
    shifts = {}
    for wallet_id, then in seen.items():
        now = locked[wallet_id]
        if (now.status, now.type) != (then.status, then.type):
            raise LateWalletChanged(f"wallet {wallet_id} is {now.status}, planned as {then.status}")
        shifts[wallet_id] = (now.balance - then.balance, now.version - then.version, now.held_amount - then.held_amount)
    return shifts


def shift_entries(entries: Iterable[PlannedEntry], shifts: Mapping[uuid.UUID, Shift]) -> list[PlannedEntry]:
    """The entries with balance_after and version moved as their wallets moved (`lock_late`)."""
    return [
        e._replace(
            balance_after=e.balance_after + shifts[e.wallet_id][0],
            wallet_version=e.wallet_version + shifts[e.wallet_id][1],
        )
        for e in entries
    ]


def settle_transfers(session: Session, transaction_ids: Sequence[uuid.UUID]) -> SettleOutcome:
    """Settle whichever of these intents are still PENDING. Safe to run twice, or twice at once."""
    claim = claim_pending(session, transaction_ids)
    return settle_claim(session, claim, skipped=len(transaction_ids) - len(claim.intents))


def settle_oldest_pending(
    session: Session, *, limit: int, min_age: timedelta = timedelta(0), passed: Sequence[uuid.UUID] = ()
) -> SettleOutcome:
    """Claim up to `limit` of the oldest PENDING intents no one else holds, all of one organisation
    (`_LOCK_OLDEST`), and settle them.

    For draining a backlog: two drainers take disjoint batches (SKIP LOCKED), and an intent is
    never claimed twice. Fewer than `limit` settled means that organisation's backlog is gone, for
    now; nothing claimed means the whole backlog is. `passed`: organisations to pass over (a drain's,
    whose backlog it has taken).
    """
    claim = claim_oldest(session, limit=limit, min_age=min_age, passed=passed)
    return replace(settle_claim(session, claim, skipped=0), organization_id=claim.organization_id)


def settle_claim(session: Session, claim: Claim, *, skipped: int) -> SettleOutcome:
    """Post claimed intents: lock their wallets, plan in memory, write everything in a few statements."""
    if not claim.intents:
        return SettleOutcome(completed=0, failed=0, skipped=skipped)
    # Per debited wallet, first accepted first settled: the others wait for a later batch.
    waiting = order.waiting_behind_others(session, claim.intents, claim.accepted_at)
    intents = order.in_order(claim.intents, waiting, claim.system_wallets)
    if not intents:
        return SettleOutcome(completed=0, failed=0, skipped=skipped, deferred=len(claim.intents))
    # A refund's original is a transactions row: locked before any wallet (see `lock_wallets`).
    refund_ids = {i.id for i in intents if i.type == refunds.REFUND}
    refunds.lock_originals(session, sorted(refund_ids))
    # Cross-organisation intents also post an obligation between clearing wallets (ledger/clearing/routing.py).
    from ledger.clearing import routing  # imported here: clearing builds on this module's types

    routes = routing.route_intents(session, intents, claim.owners)
    late = late_wallets(intents, routes, claim.system_wallets)
    # Holds before wallets: a void or an expiry locks its hold, then its wallet (ledger/intents/holds.py).
    holds = hold_outcomes.lock_holds(session, intents)
    intents, wallets = lock_for(session, intents, routes, late, claim.system_wallets)
    deferred = len(claim.intents) - len(intents)
    late &= {i.destination_wallet_id for i in intents}  # those still credited by the intents going ahead
    seen = read_wallets(session, late)
    wallets.update({wallet_id: replace(state) for wallet_id, state in seen.items()})
    # Balance monitors on these wallets (one indexed query): only their wallets are traced.
    watches = monitors.watching(session, [w.id for w in wallets.values() if w.type != _SYSTEM])
    unlocked = read_wallets(session, unlocked_destinations(intents, wallets))
    wallets.update(unlocked)
    budget = risk.load_budget(session, intents, wallets, claim.owners)
    # P2P settles are not reviewed: their request follows only the engine's outcomes.
    rules = review.load_review(session, intents, wallets, claim.owners, exempt=set(claim.paying_requests))
    plan, obligations = routing.plan_with_obligations(
        intents, wallets, routes, budget, holds, rules, frozenset(watches)
    )
    # Taken after the locks: entry times then never run backwards along a wallet's versions.
    posted_at: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    routing.write_obligations(session, obligations, posted_at)
    _write_entries(session, [e for e in plan.entries if e.wallet_id not in late], posted_at)
    assert not any(w.touched for w in unlocked.values()), "a wallet read without its lock is never written"
    _write_balances(session, [w for w in wallets.values() if w.touched and w.id not in late])
    # The holds' rows, and their events built, before the late wallets' lock; the events are
    # written after it, as before (each wallet's events in the order of its versions).
    hold_events = hold_outcomes.write_holds(session, intents, plan, holds, posted_at)
    trace: list[monitors.Point] = list(plan.trace) if watches else []
    if not late:
        _follow_requests(session, plan, claim.paying_requests, posted_at)
        _write_outcomes(session, plan, posted_at, unannounced=sum(i.type == _HOLD for i in intents))
    else:
        _write_outcomes(session, plan, posted_at, with_events=False)
        shifts = _post_to_late_wallets(session, plan, wallets, seen)
        _check_late_monitors(session, late, watches)
        trace = shift_trace(trace, shifts) if watches else trace
        # Events after every lock, so each wallet's events are in the order of its versions.
        _follow_requests(session, plan, claim.paying_requests, posted_at)
        events.record_transaction_events(session, [*plan.completed, *plan.failed])
    # The console's activity charts: one grouped insert of this batch's outcomes, appended to a table
    # no one updates, so batches never wait on each other for it (ledger/analytics.py).
    analytics.record_settled(session, [*plan.completed, *plan.failed])
    # Each crossing of a monitor's threshold along the batch, in intent order (ledger/monitors.py).
    monitors.announce(session, watches, trace)
    _follow_refunds(session, plan, refund_ids)
    hold_outcomes.record_prepared(session, hold_events)
    review.write_reviews(session, plan, posted_at)
    risk.record_breaches(session, budget)
    return SettleOutcome(
        completed=len(plan.completed),
        failed=len(plan.failed),
        skipped=skipped,
        deferred=deferred,
        in_review=len(plan.in_review),
    )


def _check_late_monitors(
    session: Session, late: Iterable[uuid.UUID], watches: Mapping[uuid.UUID, Sequence[monitors.Watch]]
) -> None:
    """The late wallets' monitors were read before their lock: a monitor created or deleted since
    would be decided against the wrong set, so the batch is planned again (rare: monitors change
    seldom, and only between the batch's unlocked read and its late lock)."""
    late_ids = list(late)
    now = {w.id for ws in monitors.watching(session, late_ids).values() for w in ws}
    then = {w.id for wallet_id in late_ids for w in watches.get(wallet_id, ())}
    if now != then:
        raise LateWalletChanged("a late wallet's monitors changed before it was locked")


def shift_trace(trace: Iterable[monitors.Point], shifts: Mapping[uuid.UUID, Shift]) -> list[monitors.Point]:
    """The monitors' trace with each late wallet's points moved as the wallet moved (`lock_late`)."""
    moved: list[monitors.Point] = []
    for wallet_id, intent_id, balance, held in trace:
        shift = shifts.get(wallet_id)
        if shift is not None:
            balance, held = balance + shift[0], held + shift[2]
        moved.append((wallet_id, intent_id, balance, held))
    return moved


def _post_to_late_wallets(
    session: Session, plan: Plan, wallets: dict[uuid.UUID, WalletState], seen: Mapping[uuid.UUID, WalletState]
) -> dict[uuid.UUID, Shift]:
    """Lock the late wallets, held from here to the commit, and write their entries and balances,
    shifted onto what they hold now. Their entries are stamped after the lock, so entry times never
    run backwards along a wallet's versions."""
    shifts = lock_late(session, seen)
    posted_at: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    _write_entries(session, shift_entries((e for e in plan.entries if e.wallet_id in seen), shifts), posted_at)
    for wallet_id, (balance, version, held) in shifts.items():
        # The held amount too: a void or expiry may have released part of it meanwhile, and the
        # balances statement writes it back.
        wallets[wallet_id].shift(balance, version, held)
    _write_balances(session, [wallets[w] for w in seen if wallets[w].touched])
    return shifts


def _follow_requests(session: Session, plan: Plan, paying_requests: list[uuid.UUID], posted_at: datetime) -> None:
    """The P2P requests these intents pay follow their outcomes (their events before the transactions')."""
    if not paying_requests:
        return
    completed = set(plan.completed)
    p2p.follow_outcomes(
        session,
        [i for i in paying_requests if i in completed],
        {i: plan.failed[i] for i in paying_requests if i in plan.failed},
        posted_at,
    )


def _follow_refunds(session: Session, plan: Plan, refund_ids: set[uuid.UUID]) -> None:
    """Refunds follow their outcomes (ledger/intents/refunds.py): a failed one gives back what it
    reserved on its original; each announces itself, after its transaction's event."""
    if refund_ids:
        refunds.follow_outcomes(
            session, [i for i in plan.completed if i in refund_ids], [i for i in plan.failed if i in refund_ids]
        )


# COPY streams every entry of a batch (2,000 for 1,000 intents) in one statement, with no per-row
# statement or parameter binding as an executemany INSERT has. Binary: no text to print or parse.
# The ids are made here, time-ordered as the column's default (uuid_v7(), models/ids.py) makes them,
# at a fifth of that function's cost per row, which Postgres spent while the batch held its wallets.
_COPY_ENTRIES = (
    "COPY ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version, created_at)"
    " FROM STDIN (FORMAT BINARY)"
)
_ENTRY_TYPES = ["uuid", "uuid", "uuid", "varchar", "int8", "int8", "int8", "timestamptz"]


def _write_entries(session: Session, entries: list[PlannedEntry], posted_at: datetime) -> None:
    if not entries:
        return
    # The session's own psycopg connection, so the COPY is part of the batch's transaction.
    connection = session.connection().connection.driver_connection
    assert connection is not None, "the session has a live database connection"
    with connection.cursor() as cursor, cursor.copy(_COPY_ENTRIES) as copy:
        copy.set_types(_ENTRY_TYPES)
        write_row = copy.write_row
        for e in entries:
            write_row(
                (
                    new_copy_id(),
                    e.wallet_id,
                    e.transaction_id,
                    _DEBIT if e.direction is Direction.DEBIT else _CREDIT,
                    e.amount,
                    e.balance_after,
                    e.wallet_version,
                    posted_at,
                )
            )


_UPDATE_BALANCES = """
    UPDATE wallets AS w
       SET balance = v.balance, version = v.version, held_amount = v.held, updated_at = now()
      FROM unnest(%(ids)b::uuid[], %(balances)b::bigint[], %(versions)b::bigint[], %(held)b::bigint[])
           AS v(id, balance, version, held)
     WHERE w.id = v.id
"""


def _write_balances(session: Session, wallets: list[WalletState]) -> None:
    if not wallets:
        return
    execute(
        session,
        _UPDATE_BALANCES,
        {
            "ids": [w.id for w in wallets],
            "balances": [w.balance for w in wallets],
            "versions": [w.version for w in wallets],
            "held": [w.held_amount for w in wallets],
        },
    )


# The final statuses, and in the same statement the outbox events they announce (ledger/integrity/events.py).
_SET_STATUSES = """
    UPDATE transactions AS t
       SET status = v.status, failure_reason = v.reason, completed_at = %(posted_at)b
      FROM unnest(%(ids)b::uuid[], %(statuses)b::text[], %(reasons)b::text[]) AS v(id, status, reason)
     WHERE t.id = v.id
"""
_UPDATE_OUTCOMES = events.with_transaction_events(_SET_STATUSES + " RETURNING t.*")


def _write_outcomes(
    session: Session, plan: Plan, posted_at: datetime, *, with_events: bool = True, unannounced: int = 0
) -> None:
    """COMPLETED or FAILED(reason), and unless told otherwise each one's event, in intent order.
    Events are written while the batch holds every wallet's row lock (so per-wallet event order holds).
    `unannounced`: the HOLD intents among them, whose holds write their own events (hold_outcomes)."""
    ids = [*plan.completed, *plan.failed]
    statuses = [TransactionStatus.COMPLETED.value] * len(plan.completed) + [TransactionStatus.FAILED.value] * len(
        plan.failed
    )
    reasons: list[str | None] = [None] * len(plan.completed) + [r.value for r in plan.failed.values()]
    parameters = {"ids": ids, "statuses": statuses, "reasons": reasons, "posted_at": posted_at}
    if not with_events:
        written = execute(session, _SET_STATUSES, parameters).rowcount
        assert written == len(ids), "every claimed intent reaches exactly one final status"
        return
    settled = execute(session, _UPDATE_OUTCOMES, parameters).all()
    assert len(settled) == len(ids) - unannounced, "every claimed intent reaches exactly one final status"
    events.note_transaction_events(session, settled)
