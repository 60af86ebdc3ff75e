"""Logs: one JSON object a line (LOG_FORMAT=text for humans), one line per request, request ids.

Every request gets an id: the client's X-Request-ID if sane, else a new one.
It is echoed in the response and put on every log line written while the
request is handled, so one request's lines can be found together.
"""

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import datetime, timezone
from time import perf_counter

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

REQUEST_ID_HEADER = "X-Request-ID"
# Printable ASCII, as a header value and a log field can carry it unescaped.
SANE_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# Control characters (C0, DEL, C1) and Unicode line separators: in a text line they could end it
# and forge the next (a %0a in a path). JSON lines escape them already.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# When the request's middlewares started: its duration, at the clock's full precision.
STARTED = web.RequestKey("started", float)

# The id of the request being handled by the current task, for its log lines.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = current_request_id.get()
        if request_id is not None:
            line["request_id"] = request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def escape_controls(text: str) -> str:
    return CONTROL_CHARACTERS.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with control characters in messages escaped (tracebacks keep their lines)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


def configure(log_format: str) -> None:
    """Send every log line (ours, aiohttp's, the libraries') to stderr in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # one line per step; ours sums it up


def request_id_of(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler):
    request[STARTED] = perf_counter()
    request_id = request_id_of(request)
    token = current_request_id.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as error:  # aiohttp answers it; problem_middleware turns errors into responses first
        error.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        # The connection's task handles its next request with another id.
        current_request_id.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


class AccessLogger(AbstractAccessLogger):
    """One line per request, its fields apart for log tooling; replaces aiohttp's format string."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # aiohttp's `time` comes from the event loop's clock, in whole milliseconds under uvloop.
        started = request.get(STARTED)
        seconds = perf_counter() - started if started is not None else time
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(seconds * 1000, 3),
            # From the response: requests aiohttp refuses before any middleware have none.
            "request_id": response.headers.get(REQUEST_ID_HEADER),
            "remote": request.remote,
        }
        self.logger.info(
            '%s "%s %s" %s %.2fms %s', fields["remote"], fields["method"], fields["path"], fields["status"],
            fields["duration_ms"], fields["request_id"], extra={"fields": fields},
        )
