"""Log formats (`log_format: text|json`) and the logging configuration `pyreg serve` gives uvicorn.

Every line has a UTC ISO 8601 timestamp, the level and the logger name. Records that carry
structured fields (`extra={"fields": {...}}`: the access log and the audit log) are written
as `key=value` pairs (text, logfmt-style: values with spaces or quotes are quoted) or as JSON
keys (json, one object per line, for log shippers). uvicorn's own access log is off: the
registry's (`registry.access`, see `middleware`) replaces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import re
import time
from collections.abc import Mapping
from typing import Any

LOG_FORMATS = ("text", "json")
ACCESS_LOGGER = "registry.access"


def timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


# anything but printable ASCII without space, quote, equals sign or backslash needs quoting
_NEEDS_QUOTES = re.compile(r"[^!#-<>-\[\]-~]")


def _logfmt_value(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if type(value) is int or type(value) is float:
        return str(value)
    text = str(value)
    return json.dumps(text) if _NEEDS_QUOTES.search(text) else text


def logfmt(fields: Mapping[str, Any]) -> str:
    # the access log's hot path: one pass, no generator per value
    return " ".join([f"{key}={_logfmt_value(value)}" for key, value in fields.items()])


class Fields:
    """A record's message that renders its fields lazily (for handlers without our
    formatters, such as pytest's capture); our formatters read `record.fields` instead."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return logfmt(self.fields)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        body = logfmt(fields) if isinstance(fields, Mapping) else record.getMessage()
        line = f"{timestamp(record)} {record.levelname} {record.name}: {body}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


_CANCELLED = ("asyncio.exceptions.CancelledError", "KeyboardInterrupt")


class ForcedExitFilter(logging.Filter):
    """A second Ctrl-C makes uvicorn quit without waiting: the tasks still running (requests,
    the lifespan) are cancelled, and uvicorn and Starlette log each cancellation with a full
    traceback. Those are expected, not errors: each becomes one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
            record.msg, record.args, record.exc_info = "cancelled by a forced exit", (), None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif isinstance(record.msg, str) and record.msg.startswith("Traceback"):
            # Starlette's lifespan reports its failure as traceback text, not as exc_info
            if record.msg.rstrip().rsplit("\n", 1)[-1].startswith(_CANCELLED):
                record.msg, record.args = "application lifespan cancelled by a forced exit", ()
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_config(level: str, log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict for uvicorn's `log_config` (applied in every worker):
    one stderr handler with our formatter for the registry's and uvicorn's loggers."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = "DEBUG" if level == "trace" else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pyreg": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {"forced_exit": {"()": f"{__name__}.ForcedExitFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "pyreg",
                "filters": ["forced_exit"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            # replaced by registry.access
            "uvicorn.access": {"level": "WARNING", "propagate": False},
        },
    }


def configure_command(level: str, log_format: str) -> None:
    """Logging for a command-line job (`pyreg gc`: its audit lines go to stderr), unless the
    host program (a test runner, an embedding app) configured logging already."""
    if not logging.getLogger().handlers:
        config = log_config(level, log_format)
        config["loggers"] = {}
        logging.config.dictConfig(config)
