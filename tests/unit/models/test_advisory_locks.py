"""Advisory lock keys: each declared once, in models/advisory_locks.py, and nowhere else as a number."""

from __future__ import annotations

import re
from pathlib import Path

from models.advisory_locks import AdvisoryLock

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = ROOT / "models" / "advisory_locks.py"
SKIPPED_DIRECTORIES = {".venv", ".git", "var", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
# A call to pg_advisory_xact_lock, pg_try_advisory_lock_shared, ... with a literal number for its key.
NUMBERED_CALL = re.compile(r"pg_(try_)?advisory_(xact_)?lock(_shared)?\s*\(\s*-?\d", re.IGNORECASE)


def _sources() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if any(part in SKIPPED_DIRECTORIES for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and path.suffix in {".py", ".sql", ".mako", ".cfg", ".ini", ".toml", ".yml", ".yaml"}:
            found.append(path)
    return found


def test_every_key_is_declared_once():
    values = [member.value for member in AdvisoryLock]
    assert len(values) == len(set(values))
    assert len(AdvisoryLock.__members__) == len(AdvisoryLock)  # no alias: enum.unique would refuse one


def test_no_source_file_takes_an_advisory_lock_by_a_bare_number():
    offenders = [str(p.relative_to(ROOT)) for p in _sources() if NUMBERED_CALL.search(p.read_text(errors="ignore"))]
    assert offenders == []
    assert NUMBERED_CALL.search("SELECT pg_advisory_xact_lock" + "( 42 )")  # the pattern finds what it is for


def test_no_key_is_written_as_a_number_outside_the_registry():
    numbers = re.compile(r"\b(" + "|".join(str(member.value) for member in AdvisoryLock) + r")\b")
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _sources()
        if p != REGISTRY and p != Path(__file__).resolve()
        for m in numbers.finditer(p.read_text(errors="ignore"))
    ]
    assert offenders == []


def test_each_key_has_exactly_one_user():
    users: dict[AdvisoryLock, list[str]] = {member: [] for member in AdvisoryLock}
    for path in _sources():
        if path == REGISTRY or "tests" in path.relative_to(ROOT).parts:
            continue
        text = path.read_text(errors="ignore")
        for member in AdvisoryLock:
            if f"AdvisoryLock.{member.name}" in text:
                users[member].append(str(path.relative_to(ROOT)))
    assert {member.name: len(paths) for member, paths in users.items()} == {member.name: 1 for member in AdvisoryLock}
