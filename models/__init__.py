"""SQLAlchemy models, one module per aggregate. Importing this package registers every table."""

from models.activity import activity_deltas, activity_rollup
from models.audit import AuditLog
from models.base import Base
from models.fraud import FraudRules
from models.hold import Hold, HoldStatus
from models.ledger_entry import Direction, LedgerEntry
from models.monitor import BalanceMonitor, MonitorCondition
from models.organization import Organization, PlatformRole, Role, User
from models.outbox import OutboxEvent
from models.p2p import P2PRequest, P2PStatus
from models.reconciliation import (
    ReconciliationCheck,
    ReconciliationCursor,
    ReconciliationFinding,
    ReconciliationMark,
    ReconciliationMode,
    ReconciliationRun,
    ReconciliationStatus,
)
from models.risk import RiskLimits
from models.settlement import BatchStatus, BatchTrigger, LegDirection, SettlementBatch, SettlementLeg
from models.token import RevokedToken, TokenFamily
from models.transaction import (
    DESCRIPTION_LENGTH_MAX,
    FailureReason,
    IdempotencyKey,
    ReviewDecision,
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
from models.webhook import DeliveryStatus, EndpointStatus, WebhookDelivery, WebhookEndpoint

__all__ = [
    "CLEARING_WALLET_NAME",
    "DESCRIPTION_LENGTH_MAX",
    "TREASURY_WALLET_NAME",
    "AuditLog",
    "BalanceMonitor",
    "Base",
    "BatchStatus",
    "BatchTrigger",
    "DeliveryStatus",
    "Direction",
    "EndpointStatus",
    "FailureReason",
    "FraudRules",
    "Hold",
    "HoldStatus",
    "IdempotencyKey",
    "LedgerEntry",
    "LegDirection",
    "MemberRole",
    "MonitorCondition",
    "Organization",
    "OutboxEvent",
    "P2PRequest",
    "P2PStatus",
    "PlatformRole",
    "ReconciliationCheck",
    "ReconciliationCursor",
    "ReconciliationFinding",
    "ReconciliationMark",
    "ReconciliationMode",
    "ReconciliationRun",
    "ReconciliationStatus",
    "ReviewDecision",
    "RevokedToken",
    "RiskLimits",
    "Role",
    "SettlementBatch",
    "SettlementLeg",
    "TokenFamily",
    "Transaction",
    "TransactionStatus",
    "TransactionType",
    "User",
    "Wallet",
    "WalletMember",
    "WalletStatus",
    "WalletType",
    "WebhookDelivery",
    "WebhookEndpoint",
    "activity_deltas",
    "activity_rollup",
]
