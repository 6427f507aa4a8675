"""Log formatters: text lines with logfmt fields, JSON objects; UTC timestamps."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping

from registry.observe.logs import (
    ForcedExitFilter,
    JsonFormatter,
    TextFormatter,
    log_config,
    logfmt,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _record(
    fields: Mapping[str, object] | None = None, message: str = "hello %s"
) -> logging.LogRecord:
    record = logging.LogRecord("registry.access", logging.INFO, __file__, 1, message, ("x",), None)
    if fields is not None:
        record.fields = fields
    return record


def test_text_lines() -> None:
    fields = {"user": None, "route": "/v2/{name:path}/tags/list", "note": 'a "b" c', "n": 3}
    line = TextFormatter().format(_record(fields))
    stamp, level, name, rest = line.split(" ", 3)
    assert TIMESTAMP.match(stamp) and level == "INFO" and name == "registry.access:"
    assert rest == 'user=- route=/v2/{name:path}/tags/list note="a \\"b\\" c" n=3'
    assert TextFormatter().format(_record()).endswith("registry.access: hello x")
    assert logfmt({"evil": "a\nb=c"}) == 'evil="a\\nb=c"'  # one record stays one line


def test_json_lines() -> None:
    out = json.loads(JsonFormatter().format(_record({"status": 201, "user": "alice"})))
    assert out["status"] == 201 and out["user"] == "alice" and out["level"] == "info"
    assert out["logger"] == "registry.access" and TIMESTAMP.match(out["time"])
    assert json.loads(JsonFormatter().format(_record()))["message"] == "hello x"
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(message="failed %s")
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]


def test_uvicorn_config_turns_its_access_log_off() -> None:
    config = log_config("info", "json")
    assert config["formatters"]["pyreg"]["()"].endswith("JsonFormatter")
    assert config["loggers"]["uvicorn.access"] == {"level": "WARNING", "propagate": False}
    assert log_config("trace", "text")["root"]["level"] == "DEBUG"


def test_forced_exit_cancellations_become_one_warning_line() -> None:
    import asyncio

    forced = ForcedExitFilter()
    try:
        raise asyncio.CancelledError()
    except asyncio.CancelledError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (), None
        )
        record.exc_info = sys.exc_info()
    assert forced.filter(record) and record.levelname == "WARNING" and record.exc_info is None
    text = "Traceback (most recent call last):\n  File x\nasyncio.exceptions.CancelledError\n"
    lifespan = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, text, (), None)
    assert forced.filter(lifespan) and "Traceback" not in lifespan.getMessage()
    real = "Traceback (most recent call last):\n  File x\nValueError: broken\n"
    error = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, real, (), None)
    assert forced.filter(error) and error.getMessage() == real and error.levelname == "ERROR"
