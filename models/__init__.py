"""SQLAlchemy models, one module per aggregate. Importing this package registers every table."""

from models.base import Base
from models.ledger_entry import Direction, LedgerEntry
from models.organization import Organization, PlatformRole, Role, User
from models.transaction import (
    DESCRIPTION_LENGTH_MAX,
    FailureReason,
    IdempotencyKey,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from models.wallet import (
    CLEARING_WALLET_NAME,
    TREASURY_WALLET_NAME,
    MemberRole,
    Wallet,
    WalletMember,
    WalletStatus,
    WalletType,
)

__all__ = [
    "CLEARING_WALLET_NAME",
    "DESCRIPTION_LENGTH_MAX",
    "TREASURY_WALLET_NAME",
    "Base",
    "Direction",
    "FailureReason",
    "IdempotencyKey",
    "LedgerEntry",
    "MemberRole",
    "Organization",
    "PlatformRole",
    "Role",
    "Transaction",
    "TransactionStatus",
    "TransactionType",
    "User",
    "Wallet",
    "WalletMember",
    "WalletStatus",
    "WalletType",
]
