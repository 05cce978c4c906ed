"""What settling intents would do, from the state at this moment: the engine's planning, without writing.

A dry run (`?dry_run=true` on every write endpoint) runs the endpoint's own intake in a database
transaction that is always rolled back, so the intents it would accept exist only there; this
module then predicts each one's outcome with the engine's own pure planning
(`ledger.clearing.routing.plan_with_obligations` over `ledger.settlement.plan.plan_postings`, with
the risk budget of `ledger.settlement.risk.load_budget`), against the wallet rows as they stand,
read without a lock.

Who is ahead in line. Intents that debit the same wallet settle in the order they were accepted
(`ledger.settlement.order`), so an earlier PENDING intent on the source wallet settles first: the
prediction plans it first. So it does for earlier PENDING intents that credit a wallet named here
(a deposit just accepted into the source): a drain claims the oldest intents first, so they settle
first but for a race. Every earlier PENDING, unparked intent naming one of the previewed intents'
wallets is planned before them, oldest first, at most AHEAD_INTENTS_MAX of them; their own sources'
other traffic is not followed further. A parked intent is out of the order, as for the engine.

Holds. A HOLD intent is planned with its hold as the engine plans it (`plan_postings` moves the
hold's state): it would be HELD (the source's `held_amount` up, its balance not) or FAILED. A
CAPTURE takes from its hold's state as it stands (read without a lock): the balances move and the
source's `held_amount` drops by what it takes (by all that remains for a final one). Every
`balances_after` shows the held amount the plan leaves, so a PENDING hold ahead reserves before
a transfer behind it. A void is not planned: it ends its hold at once (`predict_released`).

The prediction is what a worker would decide if it settled the intents now; a transfer accepted or
settled in between can change it, as it can change the real call's outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.access import Actor, visible_wallets
from ledger.intents.p2p import REQUEST_METADATA_KEY
from ledger.settlement.hold_outcomes import read_holds
from ledger.settlement.plan import Intent, OrgCurrency, WalletState
from ledger.settlement.posting import read_wallets
from ledger.settlement.review import load_review
from ledger.settlement.risk import load_budget
from models import Hold, TransactionStatus, TransactionType, Wallet

# Earlier PENDING intents planned ahead of the previewed ones: the oldest this many. A settle batch
# is 1,000 intents, so a line longer than this is a backlog whose head settles first anyway.
AHEAD_INTENTS_MAX = 1_000

_PENDING = TransactionStatus.PENDING.value
_HOLD = TransactionType.HOLD.value
_COMPLETED = TransactionStatus.COMPLETED.value
# A hold that completes is HELD: funds reserved, nothing posted (the contract's `would_status`).
_HELD = "HELD"
# With whether each pays a P2P request (never reviewed) and was approved in review (never again).
_COLUMNS = (
    "id, source_wallet_id, destination_wallet_id, amount, currency, type, hold_id, created_at, status, failure_reason,"
    f" coalesce(metadata ? '{REQUEST_METADATA_KEY}', false) AS pays_request, review_decision IS NOT NULL AS approved"
)
_TARGETS = text(f"SELECT {_COLUMNS} FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))")
# Through the partial index of PENDING intents (the status a literal, so its predicate matches).
_AHEAD = text(
    f"""
    SELECT {_COLUMNS} FROM transactions
     WHERE status = '{_PENDING}' AND parked_at IS NULL
       AND (source_wallet_id = ANY(CAST(:wallets AS uuid[])) OR destination_wallet_id = ANY(CAST(:wallets AS uuid[])))
       AND (created_at, id) < (:until_at, CAST(:until_id AS uuid))
       AND NOT id = ANY(CAST(:ids AS uuid[]))
     ORDER BY created_at, id
     LIMIT :limit
    """
)
_OWNERS = text("SELECT id, organization_id, currency FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))")


@dataclass(frozen=True)
class WalletAfter:
    """A wallet's three amounts as they would stand."""

    balance: int
    held_amount: int

    @property
    def available_balance(self) -> int:
        return self.balance - self.held_amount

    def as_dict(self) -> dict[str, int]:
        return {"balance": self.balance, "held_amount": self.held_amount, "available_balance": self.available_balance}


@dataclass(frozen=True)
class Prediction:
    """One intent's predicted outcome, and the caller's visible wallets among its own, after it."""

    would_status: str
    failure_reason: str | None
    balances_after: dict[uuid.UUID, WalletAfter]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "would_status": self.would_status,
            "failure_reason": self.failure_reason,
            "balances_after": {str(w): after.as_dict() for w, after in self.balances_after.items()},
        }


@dataclass(frozen=True)
class _Row:
    intent: Intent
    accepted_at: datetime
    status: str
    failure_reason: str | None
    pays_request: bool


def _row(row: Any) -> _Row:
    intent = Intent(
        row.id,
        row.source_wallet_id,
        row.destination_wallet_id,
        row.amount,
        row.currency,
        row.type,
        row.hold_id,
        approved=row.approved,
    )
    return _Row(intent, row.created_at, row.status, row.failure_reason, row.pays_request)


def _ahead(session: Session, targets: Sequence[_Row]) -> list[_Row]:
    """Earlier PENDING intents naming the targets' wallets, oldest first (see the module's doc)."""
    pending = [t for t in targets if t.status == _PENDING]
    if not pending:
        return []
    last = max(pending, key=lambda t: (t.accepted_at, t.intent.id))
    wallets = sorted({w for t in pending for w in (t.intent.source_wallet_id, t.intent.destination_wallet_id)})
    rows = session.execute(
        _AHEAD,
        {
            "wallets": wallets,
            "until_at": last.accepted_at,
            "until_id": last.intent.id,
            "ids": [t.intent.id for t in targets],
            "limit": AHEAD_INTENTS_MAX,
        },
    ).all()
    return [_row(row) for row in rows]


def _visible(session: Session, actor: Actor, wallet_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The caller sees a counterparty's balance nowhere else, so not here either."""
    ids = list(set(wallet_ids))
    if not ids:
        return set()
    return set(session.scalars(visible_wallets(actor).where(Wallet.id.in_(ids)).with_only_columns(Wallet.id)))


def predict(session: Session, actor: Actor, intent_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Prediction]:
    """Each named intent's outcome, were the engine to settle it (and those ahead of it) now.

    A final intent (an Idempotency-Key replaying one) keeps its status, and moves nothing. Call it
    in a transaction that is rolled back: routing may create a missing clearing wallet, as the
    engine would.
    """
    targets = [_row(row) for row in session.execute(_TARGETS, {"ids": list(intent_ids)}).all()]
    ahead = _ahead(session, targets)
    line = sorted([*ahead, *(t for t in targets if t.status == _PENDING)], key=lambda r: (r.accepted_at, r.intent.id))
    intents = [r.intent for r in line]
    named = {w for t in targets for w in (t.intent.source_wallet_id, t.intent.destination_wallet_id)}
    owners: dict[uuid.UUID, OrgCurrency] = {}
    ids = named | {w for i in intents for w in (i.source_wallet_id, i.destination_wallet_id)}
    for row in session.execute(_OWNERS, {"ids": sorted(ids)}):
        owners[row.id] = (row.organization_id, row.currency)
    # Imported here, as the engine does: clearing builds on the settlement modules' types.
    from ledger.clearing import routing

    routes = routing.route_intents(session, intents, owners)
    wallets: dict[uuid.UUID, WalletState] = read_wallets(session, ids | set(routes.wallet_ids))
    budget = load_budget(session, intents, wallets, owners)
    # HOLD and CAPTURE intents move their holds' states as the engine's would (read, not locked).
    holds = read_holds(session, intents)
    # P2P settles are not reviewed: their request follows only the engine's outcomes.
    review = load_review(session, intents, wallets, owners, exempt={r.intent.id for r in line if r.pays_request})
    shown = _visible(session, actor, named)

    def after(intent: Intent) -> dict[uuid.UUID, WalletAfter]:
        own = (intent.source_wallet_id, intent.destination_wallet_id)
        return {w: WalletAfter(wallets[w].balance, wallets[w].held_amount) for w in own if w in shown}

    predictions: dict[uuid.UUID, Prediction] = {}
    wanted = {t.intent.id for t in targets}
    # One intent at a time through the engine's plan, sharing the wallet states and the risk budget,
    # is the plan of the whole line (it applies intents in order): each target's balances are read
    # right after its own turn.
    for intent in intents:
        plan, _ = routing.plan_with_obligations([intent], wallets, routes, budget, holds, review)
        if intent.id in wanted:
            reason = plan.failed.get(intent.id)
            status = TransactionStatus.FAILED.value if reason is not None else _would_complete(intent.type)
            if intent.id in plan.in_review:  # held on its source (in the shared wallet state), not posted
                status = TransactionStatus.IN_REVIEW.value
            predictions[intent.id] = Prediction(status, None if reason is None else reason.value, after(intent))
    for target in targets:
        if target.status != _PENDING:
            status = _would_complete(target.intent.type) if target.status == _COMPLETED else target.status
            predictions[target.intent.id] = Prediction(status, target.failure_reason, after(target.intent))
    return predictions


def _would_complete(intent_type: str) -> str:
    return _HELD if intent_type == _HOLD else _COMPLETED


def predict_one(session: Session, actor: Actor, intent_id: uuid.UUID) -> Prediction:
    return predict(session, actor, [intent_id])[intent_id]


def predict_released(session: Session, actor: Actor, hold_id: uuid.UUID) -> Prediction:
    """A void, which ends its hold at once (not through the engine): run in the rolled-back
    transaction after the void itself, it reads the outcome rather than planning it. The hold ends
    VOIDED and what remained of it is released on the source, so the answer is COMPLETED with the
    two wallets as they stand after the release; a void the real call refuses was refused already."""
    hold = session.get_one(Hold, hold_id)
    named = {hold.source_wallet_id, hold.destination_wallet_id}
    wallets = read_wallets(session, named)
    shown = _visible(session, actor, named)
    after = {w: WalletAfter(wallets[w].balance, wallets[w].held_amount) for w in sorted(named) if w in shown}
    return Prediction(_COMPLETED, None, after)
