"""Alembic environment: migrates the database named by DATABASE_URL (or `-x url=...`)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool

import models
from models.advisory_locks import AdvisoryLock
from settings import get_settings, sqlalchemy_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = models.Base.metadata


def _database_url() -> str:
    explicit = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    return sqlalchemy_url(explicit) if explicit else get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _forget_heads_that_are_ancestors(connection: Connection) -> None:
    """Keep only the newest of several recorded heads that now lie on one line of history.

    Until 0003..0005 were put in one line after 0002, they were branches beside 0002..0008, and a
    database migrated then records several heads (0004, 0005, 0008). In the one line each of those
    but the newest is an ancestor of another, which Alembic refuses as overlapping revisions.
    """
    has_table = connection.exec_driver_sql("SELECT to_regclass('alembic_version') IS NOT NULL").scalar()
    if not has_table:
        return
    recorded = {row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
    if len(recorded) < 2:
        return
    script = ScriptDirectory.from_config(config)
    below = {
        ancestor.revision
        for head in recorded
        for ancestor in script.walk_revisions("base", head)
        if ancestor.revision != head
    }
    for stale in recorded & below:
        connection.exec_driver_sql("DELETE FROM alembic_version WHERE version_num = %s", (stale,))


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            # One migrator at a time: web, worker and beat may all start together.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (int(AdvisoryLock.MIGRATIONS),))
            _forget_heads_that_are_ancestors(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
