"""Turning rows into the dicts the response schemas dump."""

from __future__ import annotations

from typing import Any

from models import PlatformRole, User, Wallet


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "organization_id": user.organization_id,
        "role": user.role,
        "active": user.active,
        "is_operator": user.platform_role == PlatformRole.OPERATOR,
        "created_at": user.created_at,
    }


def wallet_view(wallet: Wallet) -> dict[str, Any]:
    """The three amounts: `balance` (posted), `held_amount` (reserved by open holds) and
    `available_balance` (what debits may take), all from the wallet row."""
    return {
        "id": wallet.id,
        "organization_id": wallet.organization_id,
        "owner_id": wallet.owner_id,
        "type": wallet.type,
        "currency": wallet.currency,
        "status": wallet.status,
        "name": wallet.name,
        "balance": wallet.balance,
        "held_amount": wallet.held_amount,
        "available_balance": wallet.available_balance,
        "version": wallet.version,
        "created_at": wallet.created_at,
        "updated_at": wallet.updated_at,
    }
