"""Who may see and do what. Visibility failures are NotFound, so tenants never learn of each other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from ledger.errors import Forbidden, InvalidRequest, NotFound
from models import MemberRole, Role, Wallet, WalletMember, WalletType


@dataclass(frozen=True)
class Actor:
    """The authenticated caller, as the domain needs to know them."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    is_operator: bool = False

    @property
    def is_org_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


def member_wallet_ids(actor: Actor, *roles: MemberRole) -> Select[tuple[uuid.UUID]]:
    query = select(WalletMember.wallet_id).where(WalletMember.user_id == actor.user_id)
    if roles:
        query = query.where(WalletMember.role.in_(roles))
    return query


def visible_wallets(actor: Actor) -> Select[tuple[Wallet]]:
    """Wallets the caller may read: all of their organisation's for OWNER/ADMIN, else own and shared."""
    query = select(Wallet).where(Wallet.organization_id == actor.organization_id)
    if actor.is_org_admin:
        return query
    return query.where(or_(Wallet.owner_id == actor.user_id, Wallet.id.in_(member_wallet_ids(actor))))


def not_found(session: Session, model: Any, object_id: uuid.UUID, kind: str, message: str, code: str) -> NotFound:
    """NotFound for an id the caller may not see. When a row with that id exists (another tenant's, or
    one the caller's role hides), the error names it as its `target`, so the refusal is audited as a
    probe; an id that names nothing stays a plain NotFound. One primary-key lookup, on refusals only."""
    return NotFound(message, code=code, target=(kind, object_id) if exists(session, model, object_id) else None)


def exists(session: Session, model: Any, object_id: uuid.UUID) -> bool:
    return session.execute(select(model.id).where(model.id == object_id)).first() is not None


def wallet_not_found(session: Session, wallet_id: uuid.UUID) -> NotFound:
    return not_found(session, Wallet, wallet_id, "wallet", "wallet not found", "WALLET_NOT_FOUND")


def get_visible_wallet(session: Session, actor: Actor, wallet_id: uuid.UUID, *, for_update: bool = False) -> Wallet:
    query = visible_wallets(actor).where(Wallet.id == wallet_id)
    if for_update:
        # NO KEY UPDATE: foreign-key checks of concurrent inserts (KEY SHARE) need not wait on it.
        query = query.with_for_update(key_share=True)
    wallet = session.scalars(query).one_or_none()
    if wallet is None:
        raise wallet_not_found(session, wallet_id)
    return wallet


def can_debit(session: Session, actor: Actor, wallet: Wallet) -> bool:
    """Only a wallet's owner or a CONTRIBUTOR on it may move money out of it."""
    if wallet.owner_id == actor.user_id:
        return True
    contributor = member_wallet_ids(actor, MemberRole.CONTRIBUTOR).where(WalletMember.wallet_id == wallet.id)
    return session.scalars(contributor).first() is not None


def _not_debitor() -> Forbidden:
    return Forbidden("only the wallet's owner or a CONTRIBUTOR may debit it", code="NOT_WALLET_DEBITOR")


def get_debitable_wallet(session: Session, actor: Actor, wallet_id: uuid.UUID) -> Wallet:
    wallet = get_visible_wallet(session, actor, wallet_id)
    if not can_debit(session, actor, wallet):
        raise _not_debitor()
    return wallet


def system_wallet_refused(role: str) -> InvalidRequest:
    """SYSTEM wallets (treasury, clearing) move money only through deposits, withdrawals and settlement
    batches. Who owns or contributes to one makes no difference: its balance may go negative without
    bound and skips the risk limits, so as a transfer's source it would print money, and as a
    destination (another organisation's clearing wallet) it would corrupt that organisation's books."""
    return InvalidRequest(
        f"a SYSTEM wallet cannot be the {role}: money enters and leaves one only through deposits,"
        " withdrawals and settlement batches",
        code="SYSTEM_WALLET",
    )


def require_transfer_access(
    session: Session, actor: Actor, source_wallet_id: uuid.UUID, destination_wallet_id: uuid.UUID
) -> None:
    """The rules of `get_debitable_wallet` for the source, the destination exists (in any
    organisation), and neither is a SYSTEM wallet, asked in one round trip: this runs on every
    transfer request."""
    source = visible_wallets(actor).where(Wallet.id == source_wallet_id)
    debitable = or_(Wallet.owner_id == actor.user_id, Wallet.id.in_(member_wallet_ids(actor, MemberRole.CONTRIBUTOR)))
    destination = select(Wallet.type).where(Wallet.id == destination_wallet_id).scalar_subquery()
    source_visible, source_debitable, destination_type, source_type = session.execute(
        select(
            source.exists(),
            source.where(debitable).exists(),
            destination,
            select(Wallet.type).where(Wallet.id == source_wallet_id).scalar_subquery(),
        )
    ).one()
    refuse_transfer_unless_allowed(
        source_visible,
        source_debitable,
        destination_type is not None,
        source_system=source_type == WalletType.SYSTEM,
        destination_system=destination_type == WalletType.SYSTEM,
        hidden_source=source_wallet_id if source_type is not None else None,
    )


def refuse_transfer_unless_allowed(
    source_visible: bool,
    source_debitable: bool,
    destination_exists: bool,
    *,
    source_system: bool,
    destination_system: bool,
    hidden_source: uuid.UUID | None = None,
) -> None:
    """The transfer rules' errors, in their order, from what the caller's query found: who may
    debit the source and whether the destination exists first, then the SYSTEM wallet rule.
    `hidden_source`: the source's id when it exists but the caller may not see it (a probe)."""
    if not source_visible:
        target = ("wallet", hidden_source) if hidden_source else None
        raise NotFound("wallet not found", code="WALLET_NOT_FOUND", target=target)
    if not source_debitable:
        raise _not_debitor()
    if not destination_exists:
        raise NotFound("destination wallet not found", code="DESTINATION_WALLET_NOT_FOUND")
    if source_system:
        raise system_wallet_refused("source")
    if destination_system:
        raise system_wallet_refused("destination")


def require_org_admin(actor: Actor) -> None:
    if not actor.is_org_admin:
        raise Forbidden("this action needs the OWNER or ADMIN role", code="ROLE_REQUIRED")


def can_manage_wallet(actor: Actor, wallet: Wallet) -> bool:
    """Owner of the wallet, or OWNER/ADMIN of its organisation."""
    return wallet.owner_id == actor.user_id or (actor.is_org_admin and wallet.organization_id == actor.organization_id)
