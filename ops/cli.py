"""`vaultcraft`: the operator's command line. Reads the same environment as the services.

Where DATABASE_URL or REDIS_URL is not set, it uses the embedded servers that `make run` started
under var/, so it works from a second shell with nothing exported. Failing that, or when a server
does not answer, it says so in one line (exit 1) instead of a traceback.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import Any

import click
import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from ops import devservers
from ops.migrate import upgrade_to_head
from settings import VAR_DIR, SettingMissing

# A run already in progress (beat's, every 180 s, takes milliseconds to seconds) is waited for this
# long before `vaultcraft reconcile` gives up, polling every RECONCILE_BUSY_POLL_SECONDS.
RECONCILE_BUSY_WAIT_SECONDS = 30
RECONCILE_BUSY_POLL_SECONDS = 0.5
# What a server that is down or unreachable raises, through each client the commands use.
SERVER_UNREACHABLE = (
    sqlalchemy.exc.OperationalError,
    redis.exceptions.ConnectionError,
    kombu.exceptions.OperationalError,
)


class OperatorCommands(click.Group):
    """Every command finds its servers first, and reports a missing or unreachable one in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
            for name, url in devservers.running_services().items():
                os.environ.setdefault(name, url)
        try:
            return super().invoke(ctx)
        except SettingMissing as missing:
            raise click.ClickException(
                f"{missing.name} is not set and no `make run` with embedded servers is running in {VAR_DIR}: "
                f"start `make run` (in another shell), or set {missing.name}"
            ) from None
        except SERVER_UNREACHABLE as down:
            first_line = str(down).strip().splitlines()[0] if str(down).strip() else type(down).__name__
            raise click.ClickException(f"a server does not answer: {first_line}") from None


def one_line(error: Any) -> str:
    """A domain error's message and the reasons in its details (a weak password's, say), in one line."""
    details = error.details if isinstance(error.details, dict) else {}
    reasons = [str(r) for value in details.values() for r in (value if isinstance(value, list) else [value])]
    text = "; ".join([error.message, *reasons]) if reasons else error.message
    return " ".join(text.split())


@click.group(cls=OperatorCommands)
def main() -> None:
    """VaultCraft operations."""


@main.command()
def migrate() -> None:
    """Apply every pending database migration."""
    upgrade_to_head()
    click.echo("database is at the latest migration")


@main.command("create-operator")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--full-name", default="Platform operator", show_default=True)
def create_operator(email: str, password: str, full_name: str) -> None:
    """Create a platform operator account (runs settlement and reconciliation for everyone)."""
    from ledger.errors import DomainError
    from ledger.identity import create_operator as create
    from models.db import session_factory

    try:
        with session_factory().begin() as session:
            user = create(session, email=email, password=password, full_name=full_name)
            click.echo(f"operator {user.email} created ({user.id})")
    except DomainError as error:
        click.echo(f"error: {one_line(error)}", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--cut-off",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]),
    default=None,
    help="Settle obligations completed before this instant (ISO 8601 with offset); default now.",
)
def settle(cut_off: datetime | None) -> None:
    """Run a cross-organisation settlement batch now and print its legs."""
    from sqlalchemy import select

    from ledger.errors import DomainError
    from models import BatchTrigger, SettlementLeg
    from models.db import session_factory
    from tasks.settlement_batches import run_settlement_batch

    try:
        batch, created = run_settlement_batch(BatchTrigger.CLI, cut_off=cut_off)
    except DomainError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    verb = "settled" if created else "already settled by"
    click.echo(f"{verb} batch {batch.id}: cut-off {batch.cut_off.isoformat()}, {batch.transfer_count} transfers")
    with session_factory().begin() as session:
        legs = session.scalars(select(SettlementLeg).where(SettlementLeg.batch_id == batch.id)).all()
        for leg in sorted(legs, key=lambda leg: (leg.currency, -leg.net_position)):
            click.echo(
                f"  {leg.organization_id} {leg.currency} {leg.direction:<7} net {leg.net_position:>14}"
                f"  (sent {leg.sent_amount}, received {leg.received_amount})"
            )
    for skip in batch.skipped:
        click.echo(
            f"  SKIPPED {skip['organization_id']} {skip['currency']}: {skip['reason']} ({skip['wallet_status']}),"
            f" {skip['obligation_count']} obligations of {skip['obligation_amount']} wait for a later batch"
        )


@main.command()
@click.option("--full", is_flag=True, help="Check every entry, not only what changed since the last clean run.")
@click.option("--organization-id", default=None, help="Only this organisation's wallets.")
def reconcile(full: bool, organization_id: str | None) -> None:
    """Run reconciliation now and print its findings. Exits 2 when it found drift."""
    import uuid

    from ledger.errors import DomainError
    from models import ReconciliationMode
    from tasks.reconciliation import run_reconciliation

    mode = ReconciliationMode.FULL if full else ReconciliationMode.INCREMENTAL
    scope = uuid.UUID(organization_id) if organization_id else None
    busy_until = time.monotonic() + RECONCILE_BUSY_WAIT_SECONDS
    while True:
        try:
            outcome = run_reconciliation(mode, organization_id=scope, trigger="cli")
            break
        except DomainError as error:
            if error.code != "RECONCILIATION_RUNNING" or time.monotonic() > busy_until:
                click.echo(f"error: {error.message}", err=True)
                sys.exit(1)
            time.sleep(RECONCILE_BUSY_POLL_SECONDS)
    _print_run(outcome["run_id"])
    if outcome["findings"]:
        sys.exit(2)


def _print_run(run_id: object) -> None:
    from sqlalchemy import select

    from models import ReconciliationFinding, ReconciliationRun
    from models.db import session_factory

    with session_factory().begin() as session:
        run = session.get_one(ReconciliationRun, run_id)
        click.echo(
            f"run {run.id} {run.mode} {run.status}: {run.wallets_checked} wallets, {run.entries_checked} entries, "
            f"{run.transactions_checked} transactions in {run.duration_ms} ms; {run.findings_count} findings"
        )
        findings = session.scalars(select(ReconciliationFinding).where(ReconciliationFinding.run_id == run.id))
        for f in findings:
            subject = (
                f"wallet {f.wallet_id}"
                if f.wallet_id
                else f"transaction {f.transaction_id}"
                if f.transaction_id
                else f"currency {f.currency}"
            )
            click.echo(
                f"  {f.check:<32} {subject}  expected {f.expected}  actual {f.actual}  difference {f.difference}"
            )
