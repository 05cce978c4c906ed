"""gunicorn settings for the web process."""

import os

bind = f"{os.environ.get('WEB_BIND_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
# Threads, not more processes: views mostly wait on Postgres, and `?wait=` holds a thread while polling.
worker_class = "gthread"
workers = int(os.environ.get("WEB_PROCESSES", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 60
graceful_timeout = 10
# Bounded request sizes beyond Flask's own body limit.
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
