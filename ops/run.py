"""`make run`: embedded services if needed, migrations, then every Procfile process in the foreground.

Each process runs under ops.respawn and is kept running by ops.runner: one that crashes, crash-loops
or loses its supervisor never takes the others down. Ctrl-C stops the processes, and the embedded
servers this run started; so does SIGTERM or SIGINT sent to this process alone (`kill`, a supervisor,
`timeout`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ops import devservers
from ops.runner import Runner
from settings import PROJECT_ROOT, VAR_DIR


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
    try:
        return Runner((PROJECT_ROOT / "Procfile").read_text(), PROJECT_ROOT).run()
    finally:
        if embedded["REDIS_URL"]:
            devservers.stop_redis()
        if embedded["DATABASE_URL"]:
            devservers.stop_postgres()


if __name__ == "__main__":
    raise SystemExit(main())
