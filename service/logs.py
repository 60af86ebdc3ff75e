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
import os
import random
import re
import sys
import time
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


class UtcMilliseconds:
    """Times as ISO 8601 UTC to the millisecond (what isoformat(timespec="milliseconds") gives), the
    date and time of day made once a second: made each time, they were half a line's cost."""

    def __init__(self):
        self.second_and_text = (None, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        microseconds = round((created - second) * 1e6)  # as datetime.fromtimestamp rounds
        if microseconds == 1_000_000:
            second, microseconds = second + 1, 0
        cached_second, text = self.second_and_text
        if second != cached_second:
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self.second_and_text = (second, text)
        return f"{text}.{microseconds // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self):
        super().__init__()
        self.utc_milliseconds = UtcMilliseconds()

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.json_line(record.created, record.levelname.lower(), record.name, record.getMessage(),
                              record.process, getattr(record, "fields", {}), exception)

    def line(self, level: int, name: str, message: str, fields: dict) -> str:
        """The line of a record logged now, made without one (the access log's, see AccessLogger)."""
        return self.json_line(time.time(), logging.getLevelName(level).lower(), name, message, os.getpid(), fields)

    def json_line(self, created: float, level: str, name: str, message: str, pid: int, fields: dict,
                  exception: str | None = None) -> str:
        line = {
            "time": self.utc_milliseconds(created),
            "level": level,
            "logger": name,
            "message": message,
            "pid": pid,
        }
        request_id = current_request_id.get()
        if request_id is not None:
            line["request_id"] = request_id
        line.update(fields)
        if exception is not None:
            line["exception"] = exception
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

    def line(self, level: int, name: str, message: str, fields: dict) -> str:
        """The line of a record logged now (see JsonFormatter.line); the fields are in the message."""
        return self.format(logging.LogRecord(name, level, "", 0, message, None, None))


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
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.queue(line, record.levelno)

    def write_line(self, line: str, level: int) -> None:
        """A line formatted already (by self.formatter.line), as if a record of `level` gave it."""
        with self.lock:
            self.queue(line, level)

    def queue(self, line: str, level: int) -> None:
        line += self.terminator
        self.waiting.append(line)
        self.waiting_characters += len(line)
        if level < logging.WARNING and self.waiting_characters < FLUSH_CHARACTERS:
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


def batching_handler() -> BatchingStreamHandler | None:
    """The handler configure() installed, if it did."""
    return next((handler for handler in logging.getLogger().handlers if isinstance(handler, BatchingStreamHandler)),
                None)


class AccessLogger(AbstractAccessLogger):
    """One line per request, its fields apart for log tooling; replaces aiohttp's format string.

    The line goes straight to the handler configure() installed, formatted as a record of logger
    aiohttp.access would be: the logging module's way (a record, a walk up the loggers) was the
    largest part of a read's cost (bench/: a tenth of its CPU). Without that handler, it goes
    the logging module's way."""

    def __init__(self, logger: logging.Logger, log_format: str):
        super().__init__(logger, log_format)
        self.handler = batching_handler()  # an instance per connection: looked up once for its requests

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
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
        message = '%s "%s %s" %s %.2fms %s' % (
            fields["remote"], fields["method"], fields["path"], fields["status"], fields["duration_ms"],
            fields["request_id"])
        if self.handler is None:
            self.logger.info(message, extra={"fields": fields})
        else:
            self.handler.write_line(self.handler.formatter.line(logging.INFO, self.logger.name, message, fields),
                                    logging.INFO)
