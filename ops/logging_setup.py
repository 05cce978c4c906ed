"""Structured logs: one JSON object per line, for the web and worker processes alike.

Every line carries the request id of the work it belongs to. The web layer sets it per request
(`X-Request-ID`, or a fresh one); the id travels to Celery in the task's message headers and is set
again around the task, so an intent's API line and its settlement line share one id.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("vaultcraft_request_id", default=None)

# The task header that carries the request id from the API into a Celery task.
REQUEST_ID_HEADER = "vaultcraft_request_id"

_STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "pid": record.process,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and key not in line:
                line[key] = _plain(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Marker type, so configuring twice never adds a second handler."""


def configure_logging(service: str, level: str | int | None = None) -> None:
    """JSON lines on stderr at `level`, else LOG_LEVEL, else INFO. Idempotent; other handlers stay."""
    root = logging.getLogger()
    if any(isinstance(handler, _JsonHandler) for handler in root.handlers):
        return
    handler = _JsonHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    chosen = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    root.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
