"""Wallets: creation, the per-currency SYSTEM wallets, status changes, member grants, summaries."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.access import Actor, can_manage_wallet, get_visible_wallet, require_org_admin, visible_wallets
from ledger.errors import Conflict, Forbidden, InvalidRequest, NotFound
from ledger.identity import get_user_in_org
from models import (
    CLEARING_WALLET_NAME,
    TREASURY_WALLET_NAME,
    MemberRole,
    Organization,
    Role,
    User,
    Wallet,
    WalletMember,
    WalletStatus,
    WalletType,
)
from models.ids import new_id

DEFAULT_WALLET_NAMES = {WalletType.PRIMARY: "primary", WalletType.BONUS: "bonus", WalletType.SYSTEM: "system"}


def create_wallet(
    session: Session, actor: Actor, *, wallet_type: WalletType, currency: str, name: str | None
) -> Wallet:
    if wallet_type is WalletType.SYSTEM:
        require_org_admin(actor)
    wallet = Wallet(
        organization_id=actor.organization_id,
        owner_id=actor.user_id,
        type=wallet_type,
        currency=currency,
        name=name or DEFAULT_WALLET_NAMES[wallet_type],
        status=WalletStatus.ACTIVE,
        balance=0,
        version=0,
    )
    if wallet_type is WalletType.SYSTEM:
        _claim_system_name(session, wallet)
    session.add(wallet)
    session.flush()
    return wallet


def _claim_system_name(session: Session, wallet: Wallet) -> None:
    taken = session.scalars(
        select(Wallet.id).where(
            Wallet.organization_id == wallet.organization_id,
            Wallet.currency == wallet.currency,
            Wallet.type == WalletType.SYSTEM,
            Wallet.name == wallet.name,
        )
    ).first()
    if taken is not None:
        raise Conflict("a SYSTEM wallet with this name and currency exists", code="WALLET_NAME_TAKEN")


def _organization_owner_id(session: Session, organization_id: uuid.UUID) -> uuid.UUID:
    owner_id = session.scalars(
        select(User.id)
        .where(User.organization_id == organization_id, User.role == Role.OWNER)
        .order_by(User.created_at)
        .limit(1)
    ).first()
    if owner_id is None:
        raise NotFound("organisation has no owner", code="ORGANIZATION_NOT_FOUND")
    return owner_id


def get_or_create_system_wallet(
    session: Session, organization_id: uuid.UUID, currency: str, name: str = TREASURY_WALLET_NAME
) -> uuid.UUID:
    """The organisation's SYSTEM wallet of that name and currency, created on first use.

    Concurrent first uses race on the partial unique index; ON CONFLICT makes the loser reuse the row.
    """
    query = select(Wallet.id).where(
        Wallet.organization_id == organization_id,
        Wallet.currency == currency,
        Wallet.type == WalletType.SYSTEM,
        Wallet.name == name,
    )
    existing = session.scalars(query).first()
    if existing is not None:
        return existing
    session.execute(
        insert(Wallet)
        .values(
            id=new_id(),
            organization_id=organization_id,
            owner_id=_organization_owner_id(session, organization_id),
            type=WalletType.SYSTEM,
            currency=currency,
            name=name,
            status=WalletStatus.ACTIVE,
            balance=0,
            version=0,
        )
        .on_conflict_do_nothing(
            index_elements=["organization_id", "currency", "name"],
            # Literal SQL, not a bound parameter: once psycopg prepares the statement server-side
            # (its 5th run on a connection) Postgres can no longer match `type = $1` to the index.
            index_where=text("type = 'SYSTEM'"),
        )
    )
    return session.scalars(query).one()


# Which status changes are allowed. CLOSED is final: a closed wallet's history stays, it never reopens.
ALLOWED_STATUS_CHANGES = {
    WalletStatus.ACTIVE: {WalletStatus.LOCKED, WalletStatus.CLOSED},
    WalletStatus.LOCKED: {WalletStatus.ACTIVE, WalletStatus.CLOSED},
    WalletStatus.CLOSED: set(),
}


_SETTLEMENT_WALLETS = f"('{TREASURY_WALLET_NAME}', '{CLEARING_WALLET_NAME}')"
# The organisation's treasury and clearing wallets in the wallet's currency, if the wallet is one of
# them, locked in id order (the order settlement batches and transfers lock them in).
_LOCK_SETTLEMENT_PAIR = text(
    f"""
    SELECT w.id, w.name FROM wallets AS w
      JOIN wallets AS target ON target.organization_id = w.organization_id AND target.currency = w.currency
     WHERE target.id = :id AND target.type = 'SYSTEM' AND target.name IN {_SETTLEMENT_WALLETS}
       AND w.type = 'SYSTEM' AND w.name IN {_SETTLEMENT_WALLETS}
     ORDER BY w.id
       FOR NO KEY UPDATE OF w
    """
)
# Obligations not yet settled that name the clearing wallet (through the small partial index of
# unsettled obligations).
_UNSETTLED_OBLIGATIONS = text(
    """
    SELECT count(*) FROM transactions
     WHERE type = 'CLEARING' AND status = 'COMPLETED' AND settlement_batch_id IS NULL
       AND (source_wallet_id = :clearing OR destination_wallet_id = :clearing)
    """
)


def change_status(session: Session, actor: Actor, wallet_id: uuid.UUID, status: WalletStatus) -> Wallet:
    # Row locks: the balance check for CLOSED must not race a settlement crediting the wallet, nor
    # the check of a treasury's obligations a transfer recording one on its clearing wallet.
    pair = {name: pair_id for pair_id, name in session.execute(_LOCK_SETTLEMENT_PAIR, {"id": wallet_id})}
    wallet = get_visible_wallet(session, actor, wallet_id, for_update=True)
    if not can_manage_wallet(actor, wallet):
        raise Forbidden("only the wallet's owner or an OWNER/ADMIN may change its status", code="ROLE_REQUIRED")
    current = WalletStatus(wallet.status)
    if status == current:
        return wallet
    if status not in ALLOWED_STATUS_CHANGES[current]:
        raise Conflict(f"a {current.value} wallet cannot become {status.value}", code="INVALID_STATUS_CHANGE")
    if status is not WalletStatus.ACTIVE and pair:
        _refuse_while_settling(session, wallet, pair.get(CLEARING_WALLET_NAME))
    if status is WalletStatus.CLOSED:
        _refuse_with_open_holds(session, wallet)
    if status is WalletStatus.CLOSED and wallet.balance != 0:
        raise Conflict(
            "a wallet closes only at zero balance",
            code="WALLET_NOT_EMPTY",
            details={"balance": wallet.balance},
        )
    wallet.status = status
    session.flush()
    return wallet


# HELD holds from or to the wallet (through the partial indexes of open holds).
_OPEN_HOLDS = text(
    """
    SELECT (SELECT count(*) FROM holds WHERE status = 'HELD' AND source_wallet_id = :id)
         + (SELECT count(*) FROM holds WHERE status = 'HELD' AND destination_wallet_id = :id)
    """
)


def _refuse_with_open_holds(session: Session, wallet: Wallet) -> None:
    """A wallet with open holds, paying or paid by them, does not close: they would have nowhere to
    be captured from or to. Asked under the wallet's row lock, which a hold takes to become HELD."""
    open_holds = session.execute(_OPEN_HOLDS, {"id": wallet.id}).scalar_one()
    if open_holds or wallet.held_amount:
        raise Conflict(
            "a wallet with open holds cannot be closed; capture or void them first",
            code="WALLET_HAS_OPEN_HOLDS",
            details={"open_holds": open_holds, "held_amount": wallet.held_amount},
        )


def _refuse_while_settling(session: Session, wallet: Wallet, clearing_id: uuid.UUID | None) -> None:
    """A treasury or clearing wallet that holds money or has obligations waiting for a settlement
    batch stays ACTIVE: a batch posts to both, and could not settle this organisation while one
    is LOCKED or CLOSED (it would leave the organisation out, see ledger/clearing/batches.py)."""
    unsettled = 0
    if clearing_id is not None:
        unsettled = session.execute(_UNSETTLED_OBLIGATIONS, {"clearing": clearing_id}).scalar_one()
    if wallet.balance != 0 or unsettled:
        raise Conflict(
            f"the {wallet.name} wallet carries a balance or unsettled cross-organisation obligations;"
            " it can be locked or closed only once a settlement batch has cleared them",
            code="SYSTEM_WALLET_IN_USE",
            details={"balance": wallet.balance, "unsettled_obligations": unsettled},
        )


def grant_member(
    session: Session, actor: Actor, wallet_id: uuid.UUID, *, user_id: uuid.UUID, role: MemberRole
) -> WalletMember:
    wallet = get_visible_wallet(session, actor, wallet_id)
    if not can_manage_wallet(actor, wallet):
        raise Forbidden("only the wallet's owner or an OWNER/ADMIN may grant access", code="ROLE_REQUIRED")
    if wallet.type == WalletType.SYSTEM:
        # A member of a treasury or clearing wallet could debit it, or watch another organisation's
        # obligations: no one but the organisation's OWNER/ADMIN, through deposits, touches one.
        raise InvalidRequest("a SYSTEM wallet has no members", code="SYSTEM_WALLET")
    grantee = get_user_in_org(session, actor, user_id)
    if grantee.id == wallet.owner_id:
        raise Conflict("the owner already has full access", code="ALREADY_OWNER")
    statement = (
        insert(WalletMember)
        .values(id=new_id(), wallet_id=wallet.id, user_id=grantee.id, role=role, granted_by=actor.user_id)
        .on_conflict_do_update(
            constraint="uq_wallet_members_wallet_user",
            set_={"role": role, "granted_by": actor.user_id},
        )
        .returning(WalletMember.id)
    )
    member_id = session.execute(statement).scalar_one()
    member = session.get_one(WalletMember, member_id)
    session.refresh(member)
    return member


def summarize(session: Session, actor: Actor) -> dict[str, object]:
    """The organisation's totals by currency and type, and counts by status, over visible wallets."""
    visible = visible_wallets(actor).subquery()
    totals = session.execute(
        select(visible.c.currency, visible.c.type, func.count(), func.coalesce(func.sum(visible.c.balance), 0))
        .group_by(visible.c.currency, visible.c.type)
        .order_by(visible.c.currency, visible.c.type)
    ).all()
    by_status = session.execute(select(visible.c.status, func.count()).group_by(visible.c.status)).all()
    organization = session.get_one(Organization, actor.organization_id)
    return {
        "organization_id": organization.id,
        "totals": [{"currency": c, "type": t, "wallet_count": n, "balance_total": int(s)} for c, t, n, s in totals],
        "counts_by_status": {status: count for status, count in by_status},
        "wallet_count": sum(count for _, count in by_status),
    }


def held_amounts(session: Session, wallet_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each wallet's `held_amount`: what open holds (and transfers in review) reserve on it; dry runs
    show it beside the balance, and `available_balance` is the balance less this."""
    if not wallet_ids:
        return {}
    rows = session.execute(select(Wallet.id, Wallet.held_amount).where(Wallet.id.in_(wallet_ids))).all()
    return {wallet_id: int(held) for wallet_id, held in rows}
