"""Settlement batches: net every organisation's unsettled obligations and settle them in one posting each.

    advisory lock (one batch at a time)  →  cut-off  →  claim unsettled obligations before it
    →  net them per organisation and currency (ledger.clearing.netting, pure)
    →  lock every treasury and clearing wallet involved, in id order
    →  post one SETTLEMENT per organisation: clearing → treasury by its net position
    →  record the batch and its legs, and mark every obligation and its transfer with the batch.

All of it is one database transaction: a crash leaves nothing, a commit leaves everything. The
caller commits.

An organisation whose treasury or clearing wallet in a currency is not ACTIVE (the API refuses to
lock or close one that carries money or obligations, but a wallet changed behind its back, or a
treasury locked while it had nothing to settle, can still be found so) cannot take its leg. The
batch then settles every obligation in that currency that does not involve the organisation, and
leaves every one that does, in either direction, unsettled for a later batch:

    settled   = obligations whose debtor and creditor are both unblocked in their currency
    left over = obligations with a blocked debtor or creditor (all of them, whatever the counterparty)

This keeps netting zero-sum: each obligation adds its amount to one position and takes it from
another, so any whole subset of obligations nets to zero per currency, and every organisation's
treasury still moves by exactly its net over the obligations it settled. Settling only the blocked
organisation's counterparties' side of a pair instead would leave their clearing wallets without
the obligation that balanced it. What is left on each clearing wallet is then exactly its
unsettled obligations, and the first batch after the wallet is ACTIVE again settles them.
The organisations left out are recorded on the batch (`skipped`, with the reason and what waits),
and the caller is told (`ledger.clearing.netting.SETTLEMENT_SKIPS_NOTE` in `session.info`, counted after
commit) so it can raise an alert. They are left out of the claim itself, so however many obligations wait on them,
a batch's bounded claim is never filled with obligations it cannot settle.

Batches are serialised by the advisory lock and each claims only obligations with no batch yet, so
two batches started together settle every obligation once; a cut-off is unique, so asking for the
same cut-off twice returns the first batch.

A new batch writes a `settlement_batch.completed` event (the batch with its legs) in the same
transaction, while it still holds its wallets' locks; `audit_run` records who ran it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, false, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from ledger.access import Actor, not_found, require_org_admin
from ledger.clearing.netting import (
    SETTLEMENT_SKIPS_NOTE,
    Obligation,
    Position,
    Standing,
    currency_totals,
    net_positions,
    organization_totals,
)
from ledger.clearing.routing import existing_system_wallet_ids, system_wallet_ids
from ledger.errors import Conflict, InvalidRequest
from ledger.integrity import audit
from ledger.integrity.events import EventFor, record_event, record_events
from ledger.pagination import Page, paginate
from ledger.settlement.plan import PlannedEntry, WalletState
from ledger.settlement.posting import _write_balances, _write_entries, lock_wallets
from models import (
    CLEARING_WALLET_NAME,
    TREASURY_WALLET_NAME,
    BatchStatus,
    BatchTrigger,
    Direction,
    LegDirection,
    SettlementBatch,
    SettlementLeg,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    WalletStatus,
    WalletType,
)
from models.advisory_locks import AdvisoryLock
from models.ids import new_id

# One batch at a time, platform-wide.
BATCH_ADVISORY_LOCK_KEY = int(AdvisoryLock.SETTLEMENT_BATCH)
# Obligations one batch settles at most; the rest wait for the next batch, oldest first.
BATCH_OBLIGATIONS_MAX = 50_000
BATCH_COMPLETED = "settlement_batch.completed"
# Who ran a batch without a user behind it, as the audit log names them.
SYSTEM_ACTOR_LABELS = {BatchTrigger.SCHEDULE: "system:beat", BatchTrigger.CLI: "system:cli"}


OrgCurrency = tuple[uuid.UUID, str]


class SkipReason(enum.StrEnum):
    TREASURY_NOT_ACTIVE = "TREASURY_NOT_ACTIVE"
    CLEARING_NOT_ACTIVE = "CLEARING_NOT_ACTIVE"


@dataclass(frozen=True)
class Blocked:
    """Why an organisation cannot take a leg in a currency: which of its wallets, in what status."""

    reason: SkipReason
    wallet_id: uuid.UUID
    wallet_status: str


@dataclass(frozen=True)
class ClaimedObligation:
    id: uuid.UUID
    parent_transaction_id: uuid.UUID
    obligation: Obligation


@dataclass(frozen=True)
class BatchRun:
    batch: SettlementBatch
    created: bool


@dataclass(frozen=True)
class PlannedLeg:
    position: Position
    treasury_wallet_id: uuid.UUID
    clearing_wallet_id: uuid.UUID
    transaction_id: uuid.UUID | None


_REASONS = {TREASURY_WALLET_NAME: SkipReason.TREASURY_NOT_ACTIVE, CLEARING_WALLET_NAME: SkipReason.CLEARING_NOT_ACTIVE}


def _blocked(session: Session) -> dict[OrgCurrency, Blocked]:
    """Every (organisation, currency) whose treasury or clearing wallet is not ACTIVE (the treasury
    named when both are). Few rows: found through the index of SYSTEM wallets, status read unlocked
    (a batch checks the wallets it posts to again under their locks)."""
    rows = session.execute(
        select(Wallet.organization_id, Wallet.currency, Wallet.name, Wallet.id, Wallet.status)
        .where(
            Wallet.type == WalletType.SYSTEM,
            Wallet.name.in_(_REASONS),
            Wallet.status != WalletStatus.ACTIVE,
        )
        .order_by(Wallet.name.desc())  # treasury before clearing
    ).all()
    blocked: dict[OrgCurrency, Blocked] = {}
    for row in rows:
        blocked.setdefault((row.organization_id, row.currency), Blocked(_REASONS[row.name], row.id, str(row.status)))
    return blocked


def _claim_obligations(
    session: Session, cut_off: datetime, excluded_clearing_ids: Sequence[uuid.UUID] = ()
) -> list[ClaimedObligation]:
    """Unsettled CLEARING obligations completed before the cut-off, oldest first, but those naming
    one of the excluded clearing wallets (organisations the batch leaves out); row-locked with the
    transfers they belong to (which the batch marks too): every transactions row before any wallet,
    the global lock order (`ledger.settlement.posting.lock_wallets`). Locked later, a transfer that a settle
    task held while it waited for a wallet this batch holds was a deadlock."""
    creditor_clearing, debtor_clearing = aliased(Wallet), aliased(Wallet)
    parent = aliased(Transaction)
    excluded = (
        [
            Transaction.source_wallet_id.not_in(excluded_clearing_ids),
            Transaction.destination_wallet_id.not_in(excluded_clearing_ids),
        ]
        if excluded_clearing_ids
        else []
    )
    rows = session.execute(
        select(
            Transaction.id,
            Transaction.parent_transaction_id,
            Transaction.amount,
            Transaction.currency,
            debtor_clearing.organization_id.label("debtor"),
            creditor_clearing.organization_id.label("creditor"),
        )
        .join(creditor_clearing, creditor_clearing.id == Transaction.source_wallet_id)
        .join(debtor_clearing, debtor_clearing.id == Transaction.destination_wallet_id)
        .join(parent, parent.id == Transaction.parent_transaction_id)
        .where(
            Transaction.type == TransactionType.CLEARING,
            Transaction.status == TransactionStatus.COMPLETED,
            Transaction.settlement_batch_id.is_(None),
            Transaction.completed_at < cut_off,
            *excluded,
        )
        .order_by(Transaction.completed_at, Transaction.id)
        .limit(BATCH_OBLIGATIONS_MAX)
        .with_for_update(of=[Transaction, parent], key_share=True)
    ).all()
    return [
        ClaimedObligation(r.id, r.parent_transaction_id, Obligation(r.debtor, r.creditor, r.currency, r.amount))
        for r in rows
    ]


def _choose_cut_off(session: Session, requested: datetime | None) -> tuple[datetime, SettlementBatch | None]:
    """The batch's cut-off, or the batch that already settled the requested one."""
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    if requested is not None:
        existing = session.scalars(select(SettlementBatch).where(SettlementBatch.cut_off == requested)).first()
        if existing is not None:
            return requested, existing
        if requested > now:
            raise InvalidRequest("the cut-off cannot be in the future", code="CUT_OFF_IN_FUTURE")
    cut_off = requested or now
    last = _last_cut_off(session)
    if last is not None and cut_off < last:
        raise Conflict(
            "a later cut-off has already been settled",
            code="CUT_OFF_ALREADY_SETTLED",
            details={"last_cut_off": last.isoformat()},
        )
    return cut_off, None


def _last_cut_off(session: Session) -> datetime | None:
    return session.execute(select(func.max(SettlementBatch.cut_off))).scalar_one()


def run_batch(
    session: Session,
    *,
    trigger: BatchTrigger,
    created_by: uuid.UUID | None = None,
    cut_off: datetime | None = None,
) -> BatchRun:
    """Settle every unsettled cross-organisation obligation completed before the cut-off (default: now)."""
    session.execute(select(func.pg_advisory_xact_lock(BATCH_ADVISORY_LOCK_KEY)))
    window_start = _last_cut_off(session)
    chosen, existing = _choose_cut_off(session, cut_off)
    if existing is not None:
        return BatchRun(existing, created=False)
    blocked = _blocked(session)
    blocked_clearings = existing_system_wallet_ids(session, blocked)
    claimed = _claim_obligations(session, chosen, sorted(blocked_clearings.values()))
    positions = net_positions(c.obligation for c in claimed)
    keys = sorted(positions)
    treasuries = system_wallet_ids(session, keys, TREASURY_WALLET_NAME)
    clearings = system_wallet_ids(session, keys, CLEARING_WALLET_NAME)
    wallets = lock_wallets(session, [*treasuries.values(), *clearings.values()])
    newly_blocked = _blocked_under_lock(keys, treasuries, clearings, wallets)
    if newly_blocked:  # changed since `_blocked` read them: leave these out too
        blocked.update(newly_blocked)
        blocked_clearings.update({key: clearings[key] for key in newly_blocked})
        claimed = [c for c in claimed if not _involves(c.obligation, newly_blocked)]
        positions = net_positions(c.obligation for c in claimed)
        keys = sorted(positions)
    legs, entries = _plan_legs([positions[k] for k in keys], treasuries, clearings, wallets)
    skipped = _skips(session, blocked, blocked_clearings, chosen)
    posted_at: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    batch = SettlementBatch(
        id=new_id(),
        status=BatchStatus.COMPLETED,
        trigger=trigger,
        created_by=created_by,
        window_start=window_start,
        cut_off=chosen,
        transfer_count=len(claimed),
        totals=[vars(t) for t in currency_totals([c.obligation for c in claimed], positions.values())],
        skipped=skipped,
        created_at=posted_at,
    )
    session.add(batch)
    session.flush()
    _write_leg_transactions(session, batch, legs, created_by, posted_at)
    _write_entries(session, entries, posted_at)
    _write_balances(session, [w for w in wallets.values() if w.touched])
    _write_legs(session, batch, legs, posted_at)
    _mark_settled(session, batch.id, claimed)
    _record_completed(session, batch, legs)
    if skipped:
        session.info.setdefault(SETTLEMENT_SKIPS_NOTE, []).extend((s["currency"], s["reason"]) for s in skipped)
    return BatchRun(batch, created=True)


def _blocked_under_lock(
    keys: Sequence[OrgCurrency],
    treasuries: dict[OrgCurrency, uuid.UUID],
    clearings: dict[OrgCurrency, uuid.UUID],
    wallets: dict[uuid.UUID, WalletState],
) -> dict[OrgCurrency, Blocked]:
    """The positions whose treasury or clearing wallet, now locked, is not ACTIVE."""
    blocked = {}
    for key in keys:
        for name, wallet_id in ((TREASURY_WALLET_NAME, treasuries[key]), (CLEARING_WALLET_NAME, clearings[key])):
            status = wallets[wallet_id].status
            if status != WalletStatus.ACTIVE:
                blocked[key] = Blocked(_REASONS[name], wallet_id, str(status))
                break
    return blocked


def _involves(obligation: Obligation, blocked: dict[OrgCurrency, Blocked]) -> bool:
    return (obligation.debtor_organization_id, obligation.currency) in blocked or (
        obligation.creditor_organization_id,
        obligation.currency,
    ) in blocked


# Per clearing wallet: the unsettled obligations before the cut-off that name it (through the
# partial index of unsettled obligations), what a batch leaves waiting on a blocked organisation.
_WAITING = text(
    """
    SELECT wallet_id, count(*), sum(amount) FROM (
        SELECT source_wallet_id AS wallet_id, amount FROM transactions
         WHERE type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL
           AND completed_at < :cut_off AND source_wallet_id = ANY(:ids)
        UNION ALL
        SELECT destination_wallet_id, amount FROM transactions
         WHERE type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL
           AND completed_at < :cut_off AND destination_wallet_id = ANY(:ids)
    ) AS waiting
    GROUP BY wallet_id
    """
)


def _skips(
    session: Session,
    blocked: dict[OrgCurrency, Blocked],
    clearings: dict[OrgCurrency, uuid.UUID],
    cut_off: datetime,
) -> list[dict[str, Any]]:
    """The organisations left out with obligations waiting on them (a blocked wallet with nothing
    to settle stops nothing), as the batch records them."""
    if not clearings:
        return []
    waiting = {
        row[0]: (int(row[1]), int(row[2]))
        for row in session.execute(_WAITING, {"cut_off": cut_off, "ids": list(clearings.values())})
    }
    skipped = []
    for (organization_id, currency), why in sorted(blocked.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        clearing_id = clearings.get((organization_id, currency))
        count, amount = waiting.get(clearing_id, (0, 0)) if clearing_id else (0, 0)
        if count:
            skipped.append(
                {
                    "organization_id": str(organization_id),
                    "currency": currency,
                    "reason": str(why.reason),
                    "wallet_id": str(why.wallet_id),
                    "wallet_status": why.wallet_status,
                    "obligation_count": count,
                    "obligation_amount": amount,
                }
            )
    return skipped


def _plan_legs(
    positions: Sequence[Position],
    treasuries: dict[tuple[uuid.UUID, str], uuid.UUID],
    clearings: dict[tuple[uuid.UUID, str], uuid.UUID],
    wallets: dict[uuid.UUID, WalletState],
) -> tuple[list[PlannedLeg], list[PlannedEntry]]:
    """One leg per position; a posting for each one that is not flat: clearing → treasury by its net.

    A payer's clearing wallet holds what it owes (positive) and gives it to its treasury; a receiver's
    treasury funds its clearing wallet's claim. Either way the treasury moves by the net position.
    """
    legs, entries = [], []
    for p in positions:
        key = (p.organization_id, p.currency)
        treasury, clearing = wallets[treasuries[key]], wallets[clearings[key]]
        transaction_id = new_id() if p.net_position else None
        if transaction_id is not None:
            source, destination = (clearing, treasury) if p.net_position > 0 else (treasury, clearing)
            amount = abs(p.net_position)
            debit_after, debit_version = source.post(-amount)
            credit_after, credit_version = destination.post(amount)
            entries.append(PlannedEntry(source.id, transaction_id, Direction.DEBIT, amount, debit_after, debit_version))
            entries.append(
                PlannedEntry(destination.id, transaction_id, Direction.CREDIT, amount, credit_after, credit_version)
            )
        legs.append(PlannedLeg(p, treasury.id, clearing.id, transaction_id))
    debits = sum(e.amount for e in entries if e.direction is Direction.DEBIT)
    assert debits == sum(e.amount for e in entries if e.direction is Direction.CREDIT), "unbalanced batch"
    return legs, entries


def _leg_direction(position: Position) -> LegDirection:
    if position.net_position > 0:
        return LegDirection.PAY
    return LegDirection.RECEIVE if position.net_position < 0 else LegDirection.FLAT


def _write_leg_transactions(
    session: Session,
    batch: SettlementBatch,
    legs: list[PlannedLeg],
    created_by: uuid.UUID | None,
    posted_at: datetime,
) -> None:
    rows: list[dict[str, Any]] = []
    for leg in legs:
        if leg.transaction_id is None:
            continue
        paying = leg.position.net_position > 0
        rows.append(
            {
                "id": leg.transaction_id,
                "organization_id": leg.position.organization_id,
                "created_by": created_by,
                "type": TransactionType.SETTLEMENT,
                "status": TransactionStatus.COMPLETED,
                "amount": abs(leg.position.net_position),
                "currency": leg.position.currency,
                "source_wallet_id": leg.clearing_wallet_id if paying else leg.treasury_wallet_id,
                "destination_wallet_id": leg.treasury_wallet_id if paying else leg.clearing_wallet_id,
                "description": f"net settlement, batch {batch.id}",
                "metadata_": {"settlement_batch_id": str(batch.id), "net_position": leg.position.net_position},
                "settlement_batch_id": batch.id,
                "created_at": posted_at,
                "completed_at": posted_at,
            }
        )
    if rows:
        session.execute(insert(Transaction), rows)


def _write_legs(session: Session, batch: SettlementBatch, legs: list[PlannedLeg], posted_at: datetime) -> None:
    if not legs:
        return
    session.execute(
        insert(SettlementLeg),
        [
            {
                "id": new_id(),
                "batch_id": batch.id,
                "organization_id": leg.position.organization_id,
                "currency": leg.position.currency,
                "sent_amount": leg.position.sent_amount,
                "received_amount": leg.position.received_amount,
                "net_position": leg.position.net_position,
                "direction": _leg_direction(leg.position),
                "transfer_count": leg.position.transfer_count,
                "treasury_wallet_id": leg.treasury_wallet_id,
                "clearing_wallet_id": leg.clearing_wallet_id,
                "transaction_id": leg.transaction_id,
                "created_at": posted_at,
            }
            for leg in legs
        ],
    )


def _mark_settled(session: Session, batch_id: uuid.UUID, claimed: list[ClaimedObligation]) -> None:
    """Every obligation and the transfer it came from now name the batch."""
    ids = [i for c in claimed for i in (c.id, c.parent_transaction_id)]
    if not ids:
        return
    marked = session.execute(
        update(Transaction)
        .where(Transaction.id.in_(ids), Transaction.settlement_batch_id.is_(None))
        .values(settlement_batch_id=batch_id)
        .execution_options(synchronize_session=False)
    )
    assert marked.rowcount == len(ids), "every claimed obligation and its transfer are settled exactly once"  # type: ignore[attr-defined]


def _leg_data(leg: PlannedLeg) -> dict[str, Any]:
    p = leg.position
    return {
        "organization_id": str(p.organization_id),
        "currency": p.currency,
        "sent_amount": p.sent_amount,
        "received_amount": p.received_amount,
        "net_position": p.net_position,
        "direction": str(_leg_direction(p)),
        "transfer_count": p.transfer_count,
        "treasury_wallet_id": str(leg.treasury_wallet_id),
        "clearing_wallet_id": str(leg.clearing_wallet_id),
        "transaction_id": str(leg.transaction_id) if leg.transaction_id else None,
    }


def batch_data(batch: SettlementBatch) -> dict[str, Any]:
    """The batch as its event and audit rows carry it (without legs)."""
    return {
        "id": batch.id,
        "status": str(batch.status),
        "trigger": str(batch.trigger),
        "window_start": batch.window_start,
        "cut_off": batch.cut_off,
        "transfer_count": batch.transfer_count,
        "totals": batch.totals,
        "created_at": batch.created_at,
    }


def own_summary(standings: Sequence[Standing]) -> dict[str, Any]:
    """An organisation's `transfer_count` and `totals` over its own legs (see `organization_totals`)."""
    totals = organization_totals(standings)
    return {"transfer_count": sum(t.transfer_count for t in totals), "totals": [vars(t) for t in totals]}


def _record_completed(session: Session, batch: SettlementBatch, legs: list[PlannedLeg]) -> None:
    """`settlement_batch.completed`, once per organisation in the batch (with a leg, or left out), each
    addressed to that organisation alone and carrying only its own legs, totals and skips: a tenant
    learns nothing of the others' traffic. A batch that named no organisation is announced once, to none."""
    own_legs: dict[uuid.UUID, list[PlannedLeg]] = {}
    for leg in legs:
        own_legs.setdefault(leg.position.organization_id, []).append(leg)
    skipped_organizations = {uuid.UUID(s["organization_id"]) for s in batch.skipped}
    organizations = sorted(own_legs.keys() | skipped_organizations)
    if not organizations:
        record_event(
            session, BATCH_COMPLETED, aggregate=("settlement_batch", batch.id), data={**batch_data(batch), "legs": []}
        )
        return
    events = []
    for organization_id in organizations:
        mine = own_legs.get(organization_id, [])
        data = {
            **batch_data(batch),
            **own_summary([leg.position for leg in mine]),
            "legs": [_leg_data(leg) for leg in mine],
            "skipped": [s for s in batch.skipped if s["organization_id"] == str(organization_id)],
        }
        wallet_ids = [w for leg in mine for w in (leg.treasury_wallet_id, leg.clearing_wallet_id)]
        events.append(EventFor(data, wallet_ids, [organization_id]))
    record_events(session, BATCH_COMPLETED, aggregate=("settlement_batch", batch.id), events=events)


def audit_run(session: Session, run: BatchRun, *, actor: Actor | None, origin: audit.Origin) -> None:
    """`settlement.run` for whoever ran the batch (an operator, or beat / the CLI as `system:...`), and,
    for a new batch, one row per organisation with a leg in it, so its OWNER/ADMIN see the run too:
    theirs carries only their own positions and totals, the runner's the platform's."""
    batch = run.batch
    after = {**batch_data(batch), "new_batch": run.created}
    label = None if actor else SYSTEM_ACTOR_LABELS.get(BatchTrigger(batch.trigger), "system")
    legs = _legs_by_organization(session, batch.id) if run.created else {}
    own = actor.organization_id if actor else None
    audit.record(
        session,
        actor,
        "settlement.run",
        target=("settlement_batch", batch.id),
        after=after,
        organization_id=own,
        actor_label=label,
        origin=origin,
    )
    for organization_id in sorted(org for org in legs if org != own):
        mine = legs[organization_id]
        audit.record(
            session,
            actor,
            "settlement.run",
            target=("settlement_batch", batch.id),
            after={**after, **own_summary(mine), "positions": [_position(leg) for leg in mine]},
            organization_id=organization_id,
            actor_label=label,
            origin=origin,
        )


def _position(leg: SettlementLeg) -> dict[str, Any]:
    return {"currency": leg.currency, "net_position": leg.net_position, "direction": str(leg.direction)}


def _legs_by_organization(session: Session, batch_id: uuid.UUID) -> dict[uuid.UUID, list[SettlementLeg]]:
    legs: dict[uuid.UUID, list[SettlementLeg]] = {}
    query = select(SettlementLeg).where(SettlementLeg.batch_id == batch_id).order_by(SettlementLeg.currency)
    for leg in session.scalars(query):
        legs.setdefault(leg.organization_id, []).append(leg)
    return legs


# --- reading batches -------------------------------------------------------------------------------


def visible_batches(actor: Actor) -> Select[tuple[SettlementBatch]]:
    """Operators see every batch; an organisation's OWNER/ADMIN the batches with a leg of theirs,
    or that left their organisation out."""
    query = select(SettlementBatch)
    if actor.is_operator:
        return query
    mine = exists().where(
        SettlementLeg.batch_id == SettlementBatch.id, SettlementLeg.organization_id == actor.organization_id
    )
    left_out = SettlementBatch.skipped.contains([{"organization_id": str(actor.organization_id)}])
    return query.where(or_(mine, left_out)) if actor.is_org_admin else query.where(false())


def list_batches(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page[SettlementBatch]:
    if not actor.is_operator:
        require_org_admin(actor)
    return paginate(
        session,
        visible_batches(actor),
        keys=(SettlementBatch.created_at, SettlementBatch.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def get_batch(session: Session, actor: Actor, batch_id: uuid.UUID) -> SettlementBatch:
    batch = session.scalars(visible_batches(actor).where(SettlementBatch.id == batch_id)).one_or_none()
    if batch is None:
        raise not_found(
            session,
            SettlementBatch,
            batch_id,
            "settlement_batch",
            "settlement batch not found",
            "SETTLEMENT_BATCH_NOT_FOUND",
        )
    return batch


def visible_skips(actor: Actor, batch: SettlementBatch) -> list[dict[str, Any]]:
    """The organisations the batch left out: all for operators, their own for the others."""
    if actor.is_operator:
        return list(batch.skipped)
    return [s for s in batch.skipped if s["organization_id"] == str(actor.organization_id)]


def visible_summary(actor: Actor, batch: SettlementBatch, legs: Sequence[SettlementLeg]) -> dict[str, Any]:
    """The batch's `transfer_count` and `totals` as the caller may see them: the platform's for an
    operator, the sum of their own legs (`legs`, as `visible_legs` gave them) for the others."""
    if actor.is_operator:
        return {"transfer_count": batch.transfer_count, "totals": batch.totals}
    return own_summary(legs)


def visible_legs(
    session: Session, actor: Actor, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[SettlementLeg]]:
    """Each batch's legs the caller may see: all for operators, their organisation's for the others."""
    legs: dict[uuid.UUID, list[SettlementLeg]] = {b: [] for b in batch_ids}
    if not batch_ids:
        return legs
    query = select(SettlementLeg).where(SettlementLeg.batch_id.in_(batch_ids))
    if not actor.is_operator:
        query = query.where(SettlementLeg.organization_id == actor.organization_id)
    for leg in session.scalars(query.order_by(SettlementLeg.currency, SettlementLeg.organization_id)):
        legs[leg.batch_id].append(leg)
    return legs
