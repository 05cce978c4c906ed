"""`vaultcraft create-operator` holds an operator's password to the same strength rules as signup."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from ops.cli import main
from tests.database import Database


@pytest.mark.parametrize(
    "password",
    [
        "12345678",  # eight characters, the old rule's minimum, and the most common password there is
        "password1",
        "Platform operator",  # the default full name
        "{email}",  # the email itself
        "short",
    ],
)
def test_a_weak_password_is_refused_in_one_line_and_creates_nobody(db: Database, password: str):
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    password = password.format(email=email)
    done = CliRunner().invoke(main, ["create-operator", "--email", email, "--password", password])
    assert done.exit_code == 1, done.output
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "password" in line
    assert db.scalar("SELECT count(*) FROM users WHERE email = :email", email=email) == 0


def test_a_strong_password_makes_an_operator(db: Database):
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    done = CliRunner().invoke(main, ["create-operator", "--email", email, "--password", "violet kettle 1984"])
    assert done.exit_code == 0, done.output
    assert f"operator {email} created" in done.stdout
    assert db.scalar("SELECT platform_role FROM users WHERE email = :email", email=email) == "OPERATOR"
