"""The web process: the Flask app under granian (`python -m web.serve`, the Procfile's `web`).

granian parses HTTP and manages connections in Rust and calls the WSGI app from a pool of Python
threads in each process. A transfer request is mostly CPU in Python (routing, schemas, JWT, one SQL
statement), and the Python a server runs around each request is the part a server choice changes.
Issue 3 bench machine, 32 keep-alive clients posting transfers to the web alone, four alternating
rounds: gunicorn (gthread, 2 x 4, access log on) answered 243 requests/s on average, granian (2 x 8)
282/s with its access log on and 289/s with it off. Per request, the web used 4.45 times the CPU
Postgres used with gunicorn, 3.87 times with granian.

Settings (environment):
    WEB_BIND_HOST   address to listen on (127.0.0.1)
    WEB_PORT        port (8000)
    WEB_PROCESSES   worker processes (2)
    WEB_THREADS     Python threads per process that run requests (4)
    WEB_ACCESS_LOG  0 turns the access log off (on by default)
"""

from __future__ import annotations

import os
import shutil
import sys

from settings import PROJECT_ROOT, VAR_DIR

# Two processes: threads of one process share one GIL, and on 2 cores a second process lets the web
# use both while Postgres and the worker wait. Four threads each cover a request's waits on Postgres and
# Redis (and a `?wait=` poll). Issue 3 bench machine, end to end, alternating: 2 x 4 settled 251 and
# 279/s with p99 167-336 ms at full load, 2 x 8 234 and 266/s with p99 351-421 ms (more threads
# contend for the GIL and queue longer); web alone, 1 x 8 averaged 261 requests/s against 303/s for 2 x 4.
PROCESSES_DEFAULT = 2
THREADS_DEFAULT = 4
# How long a stop waits for requests in flight before the processes are killed.
STOP_GRACE_SECONDS = 10
ACCESS_LOG_FORMAT = '%(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3fms'


def prepare_metrics_dir() -> None:
    """Prometheus multi-process mode: `make run` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
    that the web shares with Celery; a web process started on its own gets one of its own under var/.

    Set before anything imports prometheus_client, which picks its storage at import, in this process
    and so in the workers it forks. Hence not `ops.metrics.prepare_multiprocess_dir`: importing
    ops.metrics creates its metrics, and their files, at once."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    metrics_dir = VAR_DIR / "prometheus-web"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)


def check_settings() -> None:
    """What would stop every web process from starting, refused here in one line (exit 1): otherwise
    each process fails while importing the app, with a traceback, and is respawned to fail again."""
    from settings import SettingInvalid, SettingMissing, check_jwt_secret_key, get_settings

    try:
        check_jwt_secret_key(get_settings().jwt_secret_key)
    except (SettingInvalid, SettingMissing) as refused:
        sys.exit(f"web: {refused}")


def main() -> None:
    from granian.constants import Interfaces
    from granian.server import Server

    check_settings()
    prepare_metrics_dir()
    Server(
        "web.wsgi:app",
        address=os.environ.get("WEB_BIND_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEB_PORT", "8000")),
        interface=Interfaces.WSGI,
        workers=int(os.environ.get("WEB_PROCESSES", PROCESSES_DEFAULT)),
        blocking_threads=int(os.environ.get("WEB_THREADS", THREADS_DEFAULT)),
        # A worker that dies (out of memory, a crash in an extension) is replaced, as gunicorn did.
        respawn_failed_workers=True,
        workers_kill_timeout=STOP_GRACE_SECONDS,
        log_access=os.environ.get("WEB_ACCESS_LOG", "1") != "0",
        log_access_format=ACCESS_LOG_FORMAT,
        working_dir=PROJECT_ROOT,
    ).serve()


if __name__ == "__main__":
    main()
