"""Reading the database directly, to check what the API says against what was written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from models.db import get_engine


class Database:
    def scalar(self, sql: str, **params: Any) -> Any:
        with get_engine().connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def execute(self, sql: str, **params: Any) -> None:
        """A write behind the API's back, committed at once (to stage what a fault would leave)."""
        with get_engine().begin() as connection:
            connection.execute(text(sql), params)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with get_engine().connect() as connection:
            return list(connection.execute(text(sql), params).all())

    def row_counts(self) -> dict[str, int]:
        tables = (
            "organizations",
            "users",
            "wallets",
            "wallet_members",
            "transactions",
            "ledger_entries",
            "idempotency_keys",
        )
        return {table: self.scalar(f"SELECT count(*) FROM {table}") for table in tables}

    def wallet_drift(self, wallet_ids: list[str]) -> list[Any]:
        """Wallets whose cached balance or version disagrees with their entries."""
        return self.rows(
            """
            SELECT w.id, w.balance, coalesce(sum(CASE e.direction WHEN 'CREDIT' THEN e.amount ELSE -e.amount END), 0)
                   AS entry_sum, w.version, count(e.id) AS entry_count
              FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id
             WHERE w.id = ANY(CAST(:ids AS uuid[]))
             GROUP BY w.id
            HAVING w.balance <> coalesce(sum(CASE e.direction WHEN 'CREDIT' THEN e.amount ELSE -e.amount END), 0)
                OR w.version <> count(e.id)
            """,
            ids=wallet_ids,
        )

    def broken_chains(self, wallet_ids: list[str]) -> list[Any]:
        """Entries whose balance_after is not the previous one plus/minus their amount, or versions with gaps."""
        return self.rows(
            """
            SELECT wallet_id, wallet_version FROM (
              SELECT wallet_id, wallet_version, balance_after,
                     lag(balance_after, 1, 0::bigint) OVER w AS previous_balance,
                     lag(wallet_version, 1, 0::bigint) OVER w AS previous_version,
                     CASE direction WHEN 'CREDIT' THEN amount ELSE -amount END AS delta
                FROM ledger_entries WHERE wallet_id = ANY(CAST(:ids AS uuid[]))
              WINDOW w AS (PARTITION BY wallet_id ORDER BY wallet_version)
            ) chain
            WHERE balance_after <> previous_balance + delta OR wallet_version <> previous_version + 1
            """,
            ids=wallet_ids,
        )
