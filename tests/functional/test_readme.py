"""The README, run as written: every `sh` block, top to bottom in one bash, against a real stack.

Conventions the README follows (and this test enforces):
- A block right after the line `<!-- readme: not run ... -->` is not run (it starts the stack itself).
- `# → TEXT` (at the end of a command's last line, or on the lines right after it) is what that command
  prints; lines right after it that start with `#` and two or more spaces continue it. `...` stands
  for anything, `<name>` for one value (an id, a time). Whitespace is not compared.
- The walkthroughs talk to `http://127.0.0.1:8000` and call `.venv/bin/vaultcraft`; the test points
  them at its own web port and interpreter.

The stack is web (Procfile command), a Celery worker and beat on a database and Redis database of
this test's own, so platform-wide commands in the README (`vaultcraft settle`, `vaultcraft
reconcile`) see only what the README did.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from sqlalchemy.engine import make_url

from ops.processes import free_loopback_port
from settings import PROJECT_ROOT
from tests import environment

README = PROJECT_ROOT / "README.md"
NOT_RUN_MARKER = "<!-- readme: not run"
EXPECT = "# → "
CONTINUATION = re.compile(r"^#\s{2,}\S")
README_API_ORIGIN = "http://127.0.0.1:8000"
README_VENV_BIN = ".venv/bin/"
STACK_READY_SECONDS_MAX = 40
SCRIPT_SECONDS_MAX = 45
MARK = "@@readme-command {}@@"


@dataclass
class Check:
    """What the command that closes segment `segment` must print, and where the README says so."""

    segment: int
    expected: str
    readme_line: int


@dataclass
class Script:
    text: str
    checks: list[Check]
    segments: int


def shell_blocks(readme: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every ```sh block that is run."""
    lines = readme.splitlines()
    blocks, at = [], 0
    while at < len(lines):
        if lines[at].strip() == "```sh":
            end = lines.index("```", at + 1)
            previous = next((line for line in reversed(lines[:at]) if line.strip()), "")
            if not previous.startswith(NOT_RUN_MARKER):
                blocks.append((at + 2, lines[at + 1 : end]))
            at = end
        at += 1
    return blocks


def instrument(blocks: list[tuple[int, list[str]]]) -> Script:
    """The blocks as one bash script that prints a marker after every complete command."""
    out: list[str] = []
    checks: list[Check] = []
    segment = 0
    expecting: Check | None = None  # the check that continuation lines extend
    for first_line, lines in blocks:
        for offset, line in enumerate(lines):
            number = first_line + offset
            stripped = line.strip()
            if expecting and CONTINUATION.match(stripped):
                expecting.expected += " " + stripped.lstrip("#").strip()
                continue
            expecting = None
            if stripped.startswith(EXPECT):  # the previous command's output
                expecting = Check(segment - 1, stripped[len(EXPECT) :], number)
                checks.append(expecting)
                continue
            out.append(line)
            if not stripped or stripped.startswith("#") or stripped.endswith("\\"):
                continue
            if EXPECT in line:
                expecting = Check(segment, line.split(EXPECT, 1)[1], number)
                checks.append(expecting)
            out.append(f"printf '\\n{MARK.format('%s')}\\n' {segment}")
            segment += 1
    return Script("\n".join(out) + "\n", checks, segment)


def expected_pattern(expected: str) -> re.Pattern[str]:
    """`...` is anything, `<name>` one value; whitespace is dropped on both sides."""
    pattern = ""
    for piece in re.split(r"(\.\.\.|<[\w -]+>)", re.sub(r"\s+", "", expected)):
        if piece == "...":
            pattern += ".*?"
        elif piece.startswith("<") and piece.endswith(">"):
            pattern += ".+?"
        else:
            pattern += re.escape(piece)
    return re.compile(pattern, re.DOTALL)


def segments_of(output: str, count: int) -> list[str]:
    parts = re.split(MARK.format(r"(\d+)"), output)
    found = {int(parts[i]): parts[i - 1] for i in range(1, len(parts), 2)}
    return [re.sub(r"\s+", "", found.get(i, "<never ran>")) for i in range(count)]


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    web_port: int


@contextmanager
def _own_database_and_redis() -> Iterator[dict[str, str]]:
    """A fresh, migrated database and an unclaimed Redis database number on the run's servers."""
    from ops.migrate import upgrade_to_head

    name = f"vaultcraft_readme_{uuid.uuid4().hex[:10]}"
    admin_url = environment._admin_url(os.environ["DATABASE_URL"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = make_url(os.environ["DATABASE_URL"]).set(database=name).render_as_string(hide_password=False)
    redis_url = environment._claim_redis_database(os.environ["REDIS_URL"], name)
    try:
        upgrade_to_head(database_url)
        yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    finally:
        redis.Redis.from_url(redis_url).flushdb()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _procfile_command(name: str, **options: str) -> list[str]:
    """The Procfile's command for `name`, with each `--option VALUE` given here set to that value."""
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}: "):
            command = shlex.split(line.split(": ", 1)[1])
            for option, value in options.items():
                flag = f"--{option}"
                if flag in command:
                    at = command.index(flag)
                    command = command[:at] + command[at + 2 :]
                command += [flag, value]
            return command
    raise AssertionError(f"no {name} process in the Procfile")


def _wait_until_ready(web_port: int, worker_log: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    """The web answers /health and the worker has logged that it is ready (`<name>@<host> ready.`)."""
    deadline = time.monotonic() + STACK_READY_SECONDS_MAX
    web_up = worker_up = False
    while not (web_up and worker_up):
        assert time.monotonic() < deadline, f"stack not ready: web {web_up}, worker {worker_up}"
        assert all(p.poll() is None for p in processes), "a stack process exited during start-up"
        with suppress(requests.RequestException):
            web_up = web_up or requests.get(f"http://127.0.0.1:{web_port}/health", timeout=2).ok
        worker_up = worker_up or " ready." in worker_log.read_text(errors="replace")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    var_dir = tmp_path_factory.mktemp("readme-var")
    web_port = free_loopback_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if not shutil.which("psql", path=path):  # the README's tamper step uses psql; pgserver ships one
        import pgserver

        path = f"{Path(pgserver.__file__).parent / 'pginstall' / 'bin'}{os.pathsep}{path}"
    with ExitStack() as cleanup:
        urls = cleanup.enter_context(_own_database_and_redis())
        (var_dir / "prometheus").mkdir()
        env = {
            **os.environ,
            **urls,
            "PATH": path,
            "VAULTCRAFT_VAR_DIR": str(var_dir),
            "WEB_PORT": str(web_port),
            "WEB_PROCESSES": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "prometheus"),
        }
        commands = {
            "web": _procfile_command("web"),
            "worker": _procfile_command("worker", concurrency="2"),
            "beat": _procfile_command("beat", schedule=str(var_dir / "celerybeat-schedule")),
        }
        processes = []
        for name, command in commands.items():
            log = cleanup.enter_context(open(var_dir / f"{name}.log", "wb"))
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            cleanup.callback(_stop, process)
            processes.append(process)
        _wait_until_ready(web_port, var_dir / "worker.log", processes)
        yield Stack(env, web_port)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the tests ----------------------------------------------------------------------------------


def test_the_conventions_are_read_as_documented():
    script = instrument(
        [
            (
                1,
                [
                    "X=$(echo 1 \\",
                    "  2)",
                    'echo "$X"   # → 1 2',
                    "# a comment",
                    "echo a; echo b",
                    "# → a",
                    "#   b",
                    "echo c   # not an expectation",
                ],
            )
        ]
    )
    assert script.segments == 4
    assert [(c.segment, c.expected, c.readme_line) for c in script.checks] == [(1, "1 2", 3), (2, "a b", 6)]
    assert expected_pattern('{"id": "<id>", ..., "status": "SETTLED"}').fullmatch(
        '{"id":"0a-1","n":1,"status":"SETTLED"}'
    )
    assert not expected_pattern("CLEAN").fullmatch("DRIFT")
    assert "```sh" in README.read_text() and shell_blocks("<!-- readme: not run -->\n```sh\nmake run\n```\n") == []


def test_every_walkthrough_prints_what_the_readme_says(stack):
    blocks = shell_blocks(README.read_text())
    script = instrument(blocks)
    text = script.text.replace(README_API_ORIGIN, f"http://127.0.0.1:{stack.web_port}")
    text = text.replace(README_VENV_BIN, f"{Path(sys.executable).parent}/")
    assert len(script.checks) >= 20  # the walkthroughs say what they print
    assert subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode == 0

    started = time.monotonic()
    done = subprocess.run(
        ["bash"],
        input=text,
        cwd=PROJECT_ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SCRIPT_SECONDS_MAX,
    )
    seconds = time.monotonic() - started

    outputs = segments_of(done.stdout, script.segments)
    wrong = [
        f"README line {check.readme_line}: expected {check.expected!r}\n  printed {outputs[check.segment][:600]!r}"
        for check in script.checks
        if not expected_pattern(check.expected).fullmatch(outputs[check.segment])
    ]
    assert not wrong, "\n".join(wrong)
    assert seconds < SCRIPT_SECONDS_MAX
