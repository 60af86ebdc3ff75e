"""Logs: one JSON object a line (LOG_FORMAT=text for humans), one line per request, request ids.

Every request gets an id: the client's X-Request-ID if sane, else a new one.
It is echoed in the response and put on every log line written while the
request is handled, so one request's lines can be found together.

Lines below WARNING are written in batches (see BatchingStreamHandler): one
system call per request would otherwise be a large part of a read's cost.
"""

import asyncio
import contextvars
import json
import logging
import random
import re
import sys
from datetime import datetime, timezone
from time import perf_counter

import orjson
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
# Lines below WARNING wait in memory at most this long, or until this many characters wait, and
# then go out in one write; a warning or an error writes them, then itself, at once.
FLUSH_INTERVAL_SECONDS = 0.1
FLUSH_CHARACTERS = 64 * 1024
# The json module's encoder, for the lines orjson refuses (a lone surrogate in a decoded path).
JSON_FALLBACK = json.JSONEncoder(default=str).encode

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
        try:
            return orjson.dumps(line, default=str).decode()
        except orjson.JSONEncodeError:
            return JSON_FALLBACK(line)


def escape_controls(text: str) -> str:
    return CONTROL_CHARACTERS.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with control characters in messages escaped (tracebacks keep their lines)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class BatchingStreamHandler(logging.StreamHandler):
    """A StreamHandler that, in a thread running an event loop, keeps lines below WARNING for at
    most FLUSH_INTERVAL_SECONDS and writes them together; other lines, and every line of a thread
    without a loop, are written at once, after what waits (so the order is kept). What waits is
    written at exit too (logging.shutdown); a process killed outright (SIGKILL) loses it."""

    def __init__(self, stream):
        super().__init__(stream)
        self.waiting: list[str] = []
        self.waiting_characters = 0
        # The loop a flush is scheduled on (another loop, e.g. after a restart, schedules its own).
        self.flush_loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.waiting.append(line)
        self.waiting_characters += len(line)
        if record.levelno < logging.WARNING and self.waiting_characters < FLUSH_CHARACTERS:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop in this thread: nothing would flush later
                pass
            else:
                if self.flush_loop is not loop:
                    loop.call_later(FLUSH_INTERVAL_SECONDS, self.scheduled_flush)
                    self.flush_loop = loop
                return
        self.flush()

    def scheduled_flush(self) -> None:
        self.flush_loop = None
        self.flush()

    def flush(self) -> None:
        with self.lock:
            if self.waiting:
                lines, self.waiting, self.waiting_characters = "".join(self.waiting), [], 0
                try:
                    self.stream.write(lines)
                except Exception:  # a closed or broken stderr: as StreamHandler, do not raise
                    pass
            super().flush()


def configure(log_format: str) -> None:
    """Send every log line (ours, aiohttp's, the libraries') to stderr in `log_format`."""
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # one line per step; ours sums it up
    # Neither format shows where a line was logged from: not looking it up saves a stack walk a line
    # (the logging HOWTO's "Optimization").
    logging._srcfile = None


def request_id_of(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    # random (reseeded in every forked worker) rather than uuid4: no system call per request.
    return given if SANE_REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"


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
