"""What must hold after any fault, read straight from the stack's database (never through the API).

Scoped checks look at one scenario's organisation; ledger-wide checks (balances, chains, zero sum,
reconciliation) look at everything, since a fault in one scenario may hurt any wallet.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from chaos.load import LoadResult
from chaos.stack import Stack
from settings import PROJECT_ROOT

FINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED")
RECONCILE_SECONDS_MAX = 300
EXAMPLES_MAX = 5
# Answers that are not a clear outcome: the API itself failed, or dropped the connection.
UNCLEAN_ANSWER_PREFIXES = ("500", "502", "504", "connection-error")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return list(connection.execute(sql, params).fetchall())


def pending_count(database_url: str, organization_id: str) -> int:
    rows = _rows(
        database_url,
        "SELECT count(*) FROM transactions WHERE organization_id = %(org)s AND status = 'PENDING'",
        org=organization_id,
    )
    return int(rows[0][0])


def wait_until_settled(stack: Stack, organization_id: str, timeout_seconds: float) -> tuple[bool, float]:
    """Wait (bounded) until the organisation has no PENDING intent; (settled, seconds waited)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_seconds:
        try:
            if pending_count(stack.database_url, organization_id) == 0:
                return True, time.monotonic() - started
        except psycopg.OperationalError:
            pass  # Postgres may still be coming back
        time.sleep(0.5)
    return False, time.monotonic() - started


def outcome_counts(database_url: str, organization_id: str) -> dict[str, int]:
    rows = _rows(
        database_url,
        "SELECT status, count(*) FROM transactions WHERE organization_id = %(org)s AND type = 'TRANSFER'"
        " GROUP BY status ORDER BY status",
        org=organization_id,
    )
    return {str(status): int(count) for status, count in rows}


def hold_outcomes(database_url: str, organization_id: str) -> dict[str, int]:
    """How the organisation's holds ended (HELD: still open), and their captures' statuses."""
    rows = _rows(
        database_url,
        "SELECT 'hold ' || status, count(*) FROM holds WHERE organization_id = %(org)s GROUP BY status"
        " UNION ALL SELECT 'capture ' || status, count(*) FROM transactions"
        " WHERE organization_id = %(org)s AND type = 'CAPTURE' GROUP BY status ORDER BY 1",
        org=organization_id,
    )
    return {str(status): int(count) for status, count in rows}


def _examples(rows: list[tuple[Any, ...]]) -> str:
    shown = ", ".join(str(tuple(str(v) for v in row)) for row in rows[:EXAMPLES_MAX])
    return f"{len(rows)} found: {shown}" if rows else "none"


def _check(name: str, rows: list[tuple[Any, ...]], ok_detail: str) -> Check:
    return Check(name, not rows, ok_detail if not rows else _examples(rows))


def acknowledged_checks(database_url: str, load: LoadResult) -> list[Check]:
    """Every 202 (or replayed 200) names an intent that exists and reached a final status."""
    ids = sorted(set(load.accepted.values()))
    found = _rows(
        database_url,
        "SELECT id::text, status FROM transactions WHERE id = ANY(%(ids)s::uuid[])",
        ids=ids,
    )
    statuses = dict(found)
    lost = [(i,) for i in ids if i not in statuses]
    open_ = [(i, statuses[i]) for i in ids if i in statuses and statuses[i] not in FINAL_STATUSES]
    return [
        _check("no_acknowledged_intent_lost", lost, f"all {len(ids)} acknowledged intents are in the database"),
        _check("acknowledged_intents_final", open_, f"all {len(ids)} reached COMPLETED, FAILED or CANCELLED"),
    ]


def scoped_checks(database_url: str, organization_id: str) -> list[Check]:
    """The scenario organisation's intents, including any the clients never heard about."""
    org = {"org": organization_id}
    not_final = _rows(
        database_url,
        "SELECT id, status, completed_at FROM transactions WHERE organization_id = %(org)s"
        " AND (status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') OR completed_at IS NULL"
        "      OR (status = 'FAILED' AND failure_reason IS NULL))",
        **org,
    )
    entry_shape = _rows(
        database_url,
        """
        SELECT t.id, t.status, t.amount,
               count(*) FILTER (WHERE e.direction = 'DEBIT') AS debits,
               count(*) FILTER (WHERE e.direction = 'CREDIT') AS credits,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'DEBIT'), 0) AS debited,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'CREDIT'), 0) AS credited
          FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
         WHERE t.organization_id = %(org)s
         GROUP BY t.id
        HAVING (t.status = 'COMPLETED' AND t.type <> 'HOLD' AND NOT (
                    count(*) FILTER (WHERE e.direction = 'DEBIT') = 1
                AND count(*) FILTER (WHERE e.direction = 'CREDIT') = 1
                AND coalesce(sum(e.amount) FILTER (WHERE e.direction = 'DEBIT'), 0) = t.amount
                AND coalesce(sum(e.amount) FILTER (WHERE e.direction = 'CREDIT'), 0) = t.amount))
            OR ((t.status <> 'COMPLETED' OR t.type = 'HOLD') AND count(e.id) > 0)
        """,
        **org,
    )
    return [
        _check("every_intent_one_final_status", not_final, "every intent of the scenario is final and stamped"),
        _check(
            "completed_one_debit_one_credit",
            entry_shape,
            "COMPLETED: exactly one DEBIT and one CREDIT of its amount; others (and holds): no entries",
        ),
    ]


def ledger_checks(database_url: str) -> list[Check]:
    negative = _rows(
        database_url,
        "SELECT id, type, balance FROM wallets WHERE type <> 'SYSTEM' AND balance < 0",
    )
    drift = _rows(
        database_url,
        """
        SELECT w.id, w.balance, coalesce(sum(CASE e.direction WHEN 'CREDIT' THEN e.amount ELSE -e.amount END), 0),
               w.version, count(e.id)
          FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id
         GROUP BY w.id
        HAVING w.balance <> coalesce(sum(CASE e.direction WHEN 'CREDIT' THEN e.amount ELSE -e.amount END), 0)
            OR w.version <> count(e.id)
        """,
    )
    chains = _rows(
        database_url,
        """
        SELECT wallet_id, wallet_version FROM (
          SELECT wallet_id, wallet_version, balance_after,
                 lag(balance_after, 1, 0::bigint) OVER w AS previous_balance,
                 lag(wallet_version, 1, 0::bigint) OVER w AS previous_version,
                 CASE direction WHEN 'CREDIT' THEN amount ELSE -amount END AS delta
            FROM ledger_entries
          WINDOW w AS (PARTITION BY wallet_id ORDER BY wallet_version)
        ) chain
        WHERE balance_after <> previous_balance + delta OR wallet_version <> previous_version + 1
        """,
    )
    unbalanced = _rows(
        database_url,
        "SELECT currency, sum(balance) FROM wallets GROUP BY currency HAVING sum(balance) <> 0",
    )
    totals = _rows(database_url, "SELECT count(*) FROM wallets UNION ALL SELECT count(*) FROM ledger_entries")
    wallets, entries = int(totals[0][0]), int(totals[1][0])
    return [
        _check("no_negative_user_balance", negative, f"no non-SYSTEM wallet below 0 ({wallets} wallets)"),
        _check("balance_equals_entries", drift, f"cached balance and version = its entries ({entries} entries)"),
        _check("balance_after_chain_unbroken", chains, "balance_after and wallet_version chains contiguous"),
        _check("zero_sum_per_currency", unbalanced, "all balances sum to 0 per currency"),
    ]


def reconciliation_check(stack: Stack) -> Check:
    """The product's own full reconciliation, run the way an operator runs it (`vaultcraft reconcile`)."""
    finished = subprocess.run(
        [sys.executable, "-m", "ops.cli", "reconcile", "--full"],
        cwd=PROJECT_ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=RECONCILE_SECONDS_MAX,
    )
    first_line = (finished.stdout.strip().splitlines() or [""])[0][:160]
    if finished.returncode == 0:
        return Check("reconciliation_clean", True, first_line or "clean")
    output = (finished.stdout + finished.stderr)[-400:]
    return Check("reconciliation_clean", False, f"exit {finished.returncode}: {output}")


def idempotency_checks(
    database_url: str, organization_id: str, load: LoadResult, types: tuple[str, ...] = ("TRANSFER",)
) -> list[Check]:
    """Ledger effects equal unique keys: one intent per key, and every answer to a key named it."""
    by_key = _rows(
        database_url,
        "SELECT idempotency_key, array_agg(id::text) FROM transactions"
        " WHERE organization_id = %(org)s AND type = ANY(%(types)s) GROUP BY idempotency_key",
        org=organization_id,
        types=list(types),
    )
    duplicated = [(key, ids) for key, ids in by_key if key is None or len(ids) != 1]
    stored = {key: ids[0] for key, ids in by_key if key is not None and len(ids) == 1}
    mismatched = [(key, id_, stored.get(key)) for key, id_ in load.accepted.items() if stored.get(key) != id_]
    mismatched += [(key, "answered with two ids", "") for key in load.conflicting_ids]
    unknown_keys = [(key,) for key in stored if key not in load.accepted and key not in load.gave_up]
    effects = len(by_key)
    return [
        _check(
            "one_intent_per_idempotency_key",
            duplicated,
            f"{effects} intents for {effects} distinct keys ({load.attempted_keys} keys sent)",
        ),
        _check("replies_name_the_stored_intent", mismatched, f"all {len(load.accepted)} acknowledged keys agree"),
        _check("no_intent_for_unsent_key", unknown_keys, "every stored key was sent by a client"),
    ]


def due_holds_count(database_url: str, organization_id: str) -> int:
    """The organisation's holds still HELD past their expires_at: expiry has not caught up yet."""
    rows = _rows(
        database_url,
        "SELECT count(*) FROM holds WHERE organization_id = %(org)s AND status = 'HELD'"
        " AND expires_at <= clock_timestamp()",
        org=organization_id,
    )
    return int(rows[0][0])


def held_amount_check(database_url: str) -> Check:
    """Every wallet's held_amount is what remains of the HELD holds on it (ledger-wide)."""
    drift = _rows(
        database_url,
        """
        SELECT w.id, w.held_amount, coalesce(h.total, 0)
          FROM wallets w
          LEFT JOIN (SELECT source_wallet_id, sum(amount - captured_amount) AS total FROM holds
                      WHERE status = 'HELD' GROUP BY source_wallet_id) AS h ON h.source_wallet_id = w.id
         WHERE w.held_amount <> coalesce(h.total, 0)
        """,
    )
    return _check("held_amount_equals_open_holds", drift, "every held_amount = the remains of its HELD holds")


def hold_checks(database_url: str, organization_id: str) -> list[Check]:
    """The organisation's holds: captures within the hold, and each ended once, by one thing."""
    org = {"org": organization_id}
    over_captured = _rows(
        database_url,
        """
        SELECT h.id, h.amount, h.captured_amount, coalesce(sum(t.amount), 0)
          FROM holds h
          LEFT JOIN transactions t ON t.hold_id = h.id AND t.type = 'CAPTURE' AND t.status = 'COMPLETED'
         WHERE h.organization_id = %(org)s
         GROUP BY h.id
        HAVING coalesce(sum(t.amount), 0) <> h.captured_amount OR h.captured_amount > h.amount
            OR (h.status IN ('PENDING', 'FAILED') AND count(t.id) > 0)
        """,
        **org,
    )
    ended = _rows(
        database_url,
        """
        SELECT h.id, h.status, h.ended_at IS NOT NULL, i.status,
               count(e.id) FILTER (WHERE e.event_type = 'hold.voided') AS voided,
               count(e.id) FILTER (WHERE e.event_type = 'hold.expired') AS expired,
               count(e.id) FILTER (WHERE e.event_type IN ('hold.held', 'hold.failed')) AS settled
          FROM holds h
          JOIN transactions i ON i.id = h.id
          LEFT JOIN outbox_events e ON e.aggregate_type = 'hold' AND e.aggregate_id = h.id::text
         WHERE h.organization_id = %(org)s
         GROUP BY h.id, i.status
        HAVING h.status NOT IN ('HELD', 'CAPTURED', 'VOIDED', 'EXPIRED', 'FAILED')
            OR (h.status = 'HELD') = (h.ended_at IS NOT NULL)
            OR i.status <> CASE h.status WHEN 'FAILED' THEN 'FAILED' ELSE 'COMPLETED' END
            OR count(e.id) FILTER (WHERE e.event_type IN ('hold.held', 'hold.failed')) <> 1
            OR count(e.id) FILTER (WHERE e.event_type = 'hold.voided') <> (h.status = 'VOIDED')::int
            OR count(e.id) FILTER (WHERE e.event_type = 'hold.expired') <> (h.status = 'EXPIRED')::int
        """,
        **org,
    )
    late = _rows(
        database_url,
        """
        SELECT h.id, h.status, t.id FROM holds h
          JOIN transactions t ON t.hold_id = h.id AND t.status = 'COMPLETED'
         WHERE h.organization_id = %(org)s AND h.status IN ('VOIDED', 'EXPIRED') AND t.completed_at > h.ended_at
        """,
        **org,
    )
    return [
        _check("captures_within_their_hold", over_captured, "captured_amount = its COMPLETED captures, <= the hold"),
        _check(
            "every_hold_ended_once",
            ended,
            "each hold HELD or final, stamped, settled once, voided or expired at most once, by one of them",
        ),
        _check("no_capture_after_the_end", late, "no capture of a VOIDED or EXPIRED hold completed after its end"),
    ]


def answers_check(load: LoadResult) -> Check:
    unclean = sorted((a, n) for a, n in load.answers.items() if a.startswith(UNCLEAN_ANSWER_PREFIXES))
    return Check(
        "failures_are_clean",
        not unclean,
        "every refusal was a clear status (e.g. 503)" if not unclean else f"unclean answers: {unclean}",
    )


def all_checks(stack: Stack, organization_id: str, load: LoadResult, *, settled: bool, waited: float) -> list[Check]:
    url = stack.database_url
    return [
        Check("settled_by_itself", settled, f"no PENDING intent {waited:.1f} s after the load ended"),
        *acknowledged_checks(url, load),
        *scoped_checks(url, organization_id),
        *idempotency_checks(url, organization_id, load),
        answers_check(load),
        *ledger_checks(url),
        reconciliation_check(stack),
    ]
