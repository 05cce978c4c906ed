"""`make run`: embedded services if needed, migrations, then every Procfile process under honcho.

Ctrl-C stops the processes, and the embedded servers this run started.
"""

from __future__ import annotations

import os
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


def main() -> int:
    embedded = {name: not os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL")}
    os.environ.update(devservers.ensure_services())
    # The Procfile names gunicorn and celery; find them in this interpreter's environment.
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
        return subprocess.call(honcho, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return 0
    finally:
        if embedded["REDIS_URL"]:
            devservers.stop_redis()
        if embedded["DATABASE_URL"]:
            devservers.stop_postgres()


if __name__ == "__main__":
    raise SystemExit(main())
