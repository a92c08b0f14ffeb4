"""One JSON object per log line, fields passed as `extra={"fields": {...}}`."""

from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


# uvicorn logs these once per listener (twice per event here) without naming it; the process logs its own
# `serving`, `signal received` and `stopped` lines instead. "Uvicorn running on <url>" names its listener.
_PER_PROCESS = (
    "Started server process",
    "Finished server process",
    "Waiting for application",
    "Application startup complete",
    "Shutting down",
)


def _not_per_process(record: logging.LogRecord) -> bool:
    return not (record.name == "uvicorn.error" and record.getMessage().startswith(_PER_PROCESS))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_not_per_process)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
