"""`make run`: embedded services if needed, migrations, then every Procfile process under honcho.

Ctrl-C stops the processes, and the embedded servers this run started; so does SIGTERM or SIGINT
sent to this process alone (`kill`, a supervisor, `timeout`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ops import devservers
from settings import PROJECT_ROOT, VAR_DIR

# Broker clients that a Redis blip can kill (see ops/respawn.py); honcho would stop everything with them.
SUPERVISED_PROCESSES = ("worker", "beat")


def supervised_procfile(procfile: str) -> str:
    """The Procfile with worker and beat run under ops.respawn; docker compose restarts them instead."""
    lines = []
    for line in procfile.splitlines():
        name, _, command = line.partition(": ")
        if name in SUPERVISED_PROCESSES:
            line = f"{name}: python -m ops.respawn -- {command}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def run_until_stopped(command: list[str]) -> int:
    """Run honcho until every process it started has exited.

    A stop signal for this process is passed on to honcho as SIGTERM, and this process waits for it:
    honcho stops its processes (SIGTERM, then SIGKILL after 5 s) and only then may the embedded
    servers stop. Ctrl-C in a terminal reaches honcho directly as well; honcho acts on the first
    signal and ignores the second. Python's own handling would kill honcho (SIGKILL after 0.25 s for
    Ctrl-C, or die at once on SIGTERM) and leave its processes running without a parent.
    """
    process = subprocess.Popen(command, cwd=PROJECT_ROOT)

    def pass_on(_signum: int, _frame: object) -> None:
        process.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # honcho answers a stop with its own exit code (SIGTERM's 143, SIGINT's 130): a clean stop.
    return 0 if returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM) else returncode


def main() -> int:
    embedded = {name: not os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL")}
    os.environ.update(devservers.ensure_services())
    # The Procfile names python and celery; find them in this interpreter's environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("WEB_PORT", "8000")
    os.environ.setdefault("FLOWER_PORT", "5555")
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Every web and worker process writes its metrics here; /metrics aggregates them (wiped per run).
    from ops.metrics import MULTIPROC_DIR_ENV, prepare_multiprocess_dir

    os.environ[MULTIPROC_DIR_ENV] = str(prepare_multiprocess_dir(VAR_DIR / "prometheus"))
    from ops.migrate import upgrade_to_head

    upgrade_to_head()
    print(
        f"VaultCraft: API http://127.0.0.1:{os.environ['WEB_PORT']}/docs  "
        f"Flower http://127.0.0.1:{os.environ['FLOWER_PORT']}  (Ctrl-C stops everything)",
        flush=True,
    )
    run_procfile = VAR_DIR / "Procfile.run"
    run_procfile.write_text(supervised_procfile((PROJECT_ROOT / "Procfile").read_text()))
    honcho = [sys.executable, "-m", "honcho", "-f", str(run_procfile), "-d", str(PROJECT_ROOT), "start"]
    try:
        return run_until_stopped(honcho)
    finally:
        if embedded["REDIS_URL"]:
            devservers.stop_redis()
        if embedded["DATABASE_URL"]:
            devservers.stop_postgres()


if __name__ == "__main__":
    raise SystemExit(main())
