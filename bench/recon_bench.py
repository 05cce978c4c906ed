"""Reconciliation timings on a generated ledger: `make recon-bench` (not part of `make test`).

Creates a database of its own next to DATABASE_URL's, migrates it, writes a consistent ledger with
set-based SQL (WALLETS wallets, ENTRIES entries: deposits from the treasury, then transfers between
wallets, every balance_after / wallet_version chain correct), then times:
  1. a FULL run over everything;
  2. an INCREMENTAL run right after it (nothing new);
  3. an INCREMENTAL run after NEW_TRANSFERS more transfers settled through the real posting engine.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import psycopg
from sqlalchemy.engine import make_url

GENERATE = """
INSERT INTO organizations (id, name) VALUES (%(org)s, 'bench');
INSERT INTO users (id, organization_id, email, password_hash, full_name, role)
     VALUES (%(user)s, %(org)s, 'bench@example.com', 'x', 'Bench', 'OWNER');
INSERT INTO wallets (id, organization_id, owner_id, type, currency, status, name, balance, version)
     VALUES (%(treasury)s, %(org)s, %(user)s, 'SYSTEM', 'INR', 'ACTIVE', 'treasury', 0, 0);
CREATE TEMP TABLE bench_wallets AS
     SELECT n, gen_random_uuid() AS id FROM generate_series(0, %(wallets)s - 1) AS n;
INSERT INTO wallets (id, organization_id, owner_id, type, currency, status, name, balance, version)
     SELECT id, %(org)s, %(user)s, 'PRIMARY', 'INR', 'ACTIVE', 'w' || n, 0, 0 FROM bench_wallets;
-- Half the transactions are deposits of 1000 (treasury -> wallet n %% W), then transfers of 1
-- (wallet n %% W -> wallet (n + 1) %% W): every wallet's balance stays positive.
CREATE TEMP TABLE bench_tx AS
     SELECT s AS seq, gen_random_uuid() AS id,
            CASE WHEN s < %(half)s THEN 'DEPOSIT' ELSE 'TRANSFER' END AS type,
            CASE WHEN s < %(half)s THEN 1000 ELSE 1 END AS amount,
            CASE WHEN s < %(half)s THEN %(treasury)s::uuid ELSE a.id END AS source,
            CASE WHEN s < %(half)s THEN a.id ELSE b.id END AS destination,
            timestamptz '2025-01-01' + s * interval '1 millisecond' AS at
       FROM generate_series(0, %(transactions)s - 1) AS s
       JOIN bench_wallets AS a ON a.n = s %% %(wallets)s
       JOIN bench_wallets AS b ON b.n = (s + 1) %% %(wallets)s;
INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                          source_wallet_id, destination_wallet_id, created_at, completed_at)
     SELECT id, %(org)s, %(user)s, type, 'COMPLETED', amount, 'INR', source, destination, at, at FROM bench_tx;
INSERT INTO ledger_entries (id, wallet_id, transaction_id, direction, amount, balance_after, wallet_version, created_at)
     SELECT gen_random_uuid(), wallet_id, tx_id, direction, amount,
            SUM(signed) OVER w, ROW_NUMBER() OVER w, at
       FROM (SELECT source AS wallet_id, id AS tx_id, 'DEBIT' AS direction, amount, -amount AS signed, seq, at
               FROM bench_tx
             UNION ALL
             SELECT destination, id, 'CREDIT', amount, amount, seq, at FROM bench_tx) AS legs
     WINDOW w AS (PARTITION BY wallet_id ORDER BY seq)
     -- Stored in the order they were written, as a ledger that only appends is.
     ORDER BY seq, direction DESC;
UPDATE wallets AS w SET balance = s.total, version = s.n
  FROM (SELECT wallet_id,
               SUM(CASE WHEN direction = 'CREDIT' THEN amount ELSE -amount END) AS total, COUNT(*) AS n
          FROM ledger_entries GROUP BY wallet_id) AS s
 WHERE w.id = s.wallet_id;
"""


def _timed(label: str, mode: str) -> dict:
    from models import ReconciliationMode
    from tasks.reconciliation import run_reconciliation

    started = time.perf_counter()
    outcome = run_reconciliation(ReconciliationMode(mode), trigger="bench")
    elapsed = time.perf_counter() - started
    from models import ReconciliationRun
    from models.db import session_factory

    with session_factory().begin() as session:
        run = session.get_one(ReconciliationRun, outcome["run_id"])
        print(
            f"{label:<34} {elapsed * 1000:>9.0f} ms  status {run.status}  wallets {run.wallets_checked:>7}"
            f"  entries {run.entries_checked:>9}  transactions {run.transactions_checked:>7}",
            flush=True,
        )
    assert outcome["findings"] == 0, "the generated ledger must reconcile clean"
    return outcome


def _settle_new_transfers(count: int) -> None:
    """New activity through the real engine: PENDING intents, then ledger.settlement.posting in batches."""
    from sqlalchemy import text

    from ledger.settlement.posting import settle_transfers
    from models.db import session_factory

    with session_factory().begin() as session:
        ids = (
            session.execute(
                text(
                    """
                INSERT INTO transactions (id, organization_id, created_by, type, status, amount, currency,
                                          source_wallet_id, destination_wallet_id)
                SELECT gen_random_uuid(), organization_id, owner_id, 'TRANSFER', 'PENDING', 1, 'INR', a.id, b.id
                  FROM (SELECT id, organization_id, owner_id, row_number() OVER (ORDER BY id) AS r
                          FROM wallets WHERE type = 'PRIMARY' LIMIT :count) AS a
                  JOIN (SELECT id, row_number() OVER (ORDER BY id DESC) AS r
                          FROM wallets WHERE type = 'PRIMARY' LIMIT :count) AS b ON a.r = b.r AND a.id <> b.id
                RETURNING id
                """
                ),
                {"count": count},
            )
            .scalars()
            .all()
        )
    for start in range(0, len(ids), 1000):
        with session_factory().begin() as session:
            settle_transfers(session, ids[start : start + 1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--new-transfers", type=int, default=1_000)
    args = parser.parse_args()

    from ops import devservers

    os.environ.update(devservers.ensure_services())
    base = make_url(os.environ["DATABASE_URL"])
    admin_url = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"vaultcraft_recon_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = database_url
    try:
        from ops.migrate import upgrade_to_head

        upgrade_to_head(database_url)
        transactions = args.entries // 2
        params = {
            "org": uuid.uuid4(),
            "user": uuid.uuid4(),
            "treasury": uuid.uuid4(),
            "wallets": args.wallets,
            "transactions": transactions,
            "half": transactions // 2,
        }
        started = time.perf_counter()
        with psycopg.connect(database_url, cursor_factory=psycopg.ClientCursor) as connection:
            connection.execute(GENERATE, params)
            connection.execute("ANALYZE")
            # What autovacuum (the index's autosummarize) does soon after a load: the block ranges
            # of the entries' created_at index get their summaries, so incremental runs skip them.
            connection.execute("SELECT brin_summarize_new_values('ix_ledger_entries_created_at_brin')")
        print(
            f"generated {transactions * 2:,} entries, {transactions:,} transactions, {args.wallets + 1:,} wallets"
            f" in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        _timed("FULL (whole ledger)", "FULL")
        _timed("INCREMENTAL (nothing new)", "INCREMENTAL")
        _settle_new_transfers(args.new_transfers)
        _timed(f"INCREMENTAL (+{args.new_transfers} transfers)", "INCREMENTAL")
        _timed("FULL (again)", "FULL")
    finally:
        from models.db import dispose_engine

        dispose_engine()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
