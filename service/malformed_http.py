"""Requests aiohttp's HTTP parser refuses (bad method, oversized or too many headers, Content-Length
with Transfer-Encoding, control characters): a problem+json 400 that does not echo the request, and
at most one log line a minute about them, without tracebacks.

aiohttp answers these itself, before any middleware, with a text/plain 400 that quotes the bytes it
choked on, and logs each with a full traceback: anyone could fill the log on demand. It offers no
hook for either, so RequestHandler.handle_error is wrapped (tests/api/test_malformed_http.py fails
if an aiohttp upgrade changes it).
"""

import json
import logging
import time

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

from .errors import PROBLEM_CONTENT_TYPE

REPORT_INTERVAL_SECONDS = 60.0
_aiohttp_handle_error = web_protocol.RequestHandler.handle_error


def _handle_error(self, request, status=500, exc=None, message=None):
    # aiohttp's, for its logging and its checks; its body (which echoes the input) is dropped.
    _aiohttp_handle_error(self, request, status, exc, None)
    body = {"type": "about:blank", "title": "Bad Request" if status == 400 else "Internal Server Error",
            "status": status}
    if isinstance(exc, HttpProcessingError):
        body["detail"] = "The request is not valid HTTP/1.1 within this server's limits; it was not read."
    response = web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE)
    response.force_close()
    return response


class MalformedRequestLogFilter(logging.Filter):
    """On aiohttp.server: turns the parser's refusals into one summary line per REPORT_INTERVAL_SECONDS."""

    def __init__(self):
        super().__init__()
        self.refused = 0
        self.last_report = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self.last_report < REPORT_INTERVAL_SECONDS:
            return False
        record.msg = "refused %d malformed HTTP request(s) with 400 since the last report (latest: %s)"
        record.args = (self.refused, type(error).__name__)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        self.refused, self.last_report = 0, now
        return True


def install() -> None:
    """Once per process: aiohttp answers and logs malformed requests as above."""
    if web_protocol.RequestHandler.handle_error is _handle_error:
        return
    web_protocol.RequestHandler.handle_error = _handle_error
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestLogFilter())
