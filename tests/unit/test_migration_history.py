"""Migrations form one line of history: a plain `alembic upgrade head` needs exactly one head."""

from alembic.script import ScriptDirectory

from ops.migrate import alembic_config


def test_history_has_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"several heads: {heads}"


def test_every_revision_but_the_first_has_a_parent_in_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    roots = [revision.revision for revision in revisions if not revision.down_revision]
    assert roots == ["0001"]


def _admin_url() -> str:
    from sqlalchemy.engine import make_url

    from settings import get_settings

    return (
        make_url(get_settings().database_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


def test_a_database_migrated_while_history_was_branched_upgrades_to_the_one_head() -> None:
    """Such a database records 0004, 0005 and 0008 as heads; `upgrade head` keeps only the newest."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from ops.migrate import upgrade_to_head

    name = f"vaultcraft_branched_{uuid.uuid4().hex[:8]}"
    admin = _admin_url()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("INSERT INTO alembic_version VALUES ('0004'), ('0005')")
        upgrade_to_head(url)
        with psycopg.connect(url) as connection:
            recorded = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
        assert recorded == [head]
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
