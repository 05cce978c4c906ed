"""What proves the ledger: reconciliation, the audit log, the outbox of events."""
