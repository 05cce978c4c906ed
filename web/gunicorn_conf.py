"""gunicorn settings for the web process."""

import os

bind = f"{os.environ.get('WEB_BIND_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
# Threads, not more processes: views mostly wait on Postgres, and `?wait=` holds a thread while polling.
worker_class = "gthread"
# A transfer request is mostly CPU in Python (routing, schemas, JWT, one SQL statement; about 1.6 ms
# in process, 2.1-3.0 ms under gunicorn), and threads of one process share one GIL. Fewer processes
# cost less CPU per request on 2 cores. Issue 3 bench machine, 32 clients posting transfers, web
# alone: 2 x 2 threads 620/s (2.1 ms), 2 x 4 591-626/s (2.1-2.2 ms), 3 x 4 523-591/s (2.4-2.7 ms),
# 3 x 2 535/s, 4 x 1 483-632/s; end to end with the worker, two runs each: 2 x 4 settled 386-487/s,
# 3 x 4 362-447/s. So two processes of four threads, enough threads to cover the round trips.
workers = int(os.environ.get("WEB_PROCESSES", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
graceful_timeout = 10
# Bounded request sizes beyond Flask's own body limit.
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"


# Prometheus multi-process mode: `make run` points PROMETHEUS_MULTIPROC_DIR at a fresh directory that
# the workers share with Celery; a gunicorn started on its own gets one of its own under var/.
# Set before anything imports prometheus_client (it picks its storage at import), so no ops.metrics here.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import shutil as _shutil
    from pathlib import Path as _Path

    _metrics_dir = _Path(os.environ.get("VAULTCRAFT_VAR_DIR", _Path(__file__).resolve().parent.parent / "var"))
    _metrics_dir = _metrics_dir / "prometheus-web"
    _shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def child_exit(_server: object, worker: object) -> None:
    """A web worker exited: drop its live-gauge metric files."""
    from ops.metrics import mark_process_dead

    mark_process_dead(worker.pid)  # type: ignore[attr-defined]
