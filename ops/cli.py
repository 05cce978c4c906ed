"""`vaultcraft`: the operator's command line. Reads the same environment as the services."""

from __future__ import annotations

import sys

import click

from ops.migrate import upgrade_to_head


@click.group()
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

    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    try:
        with session_factory().begin() as session:
            user = create(session, email=email, password=password, full_name=full_name)
            click.echo(f"operator {user.email} created ({user.id})")
    except DomainError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
