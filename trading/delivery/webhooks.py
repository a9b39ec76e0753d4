"""A webhook URL is a secret: it never appears in a log, an exception, a repr or a row. Its short
fingerprint stands in for it, and the HTTP client's own loggers have request paths redacted."""
from __future__ import annotations

import hashlib
import logging
import re


def fingerprint(url: str) -> str:
    """A stable short stand-in for a secret URL (first 8 hex of its sha256), safe for logs and keys."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


_PATH = re.compile(r'(?<=[ "(:])/[^\s"]*')


class RedactPaths(logging.Filter):
    """urllib3 logs request paths (at DEBUG, and in retry warnings); webhook paths are secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _PATH.sub("/<redacted>", record.getMessage())
        record.msg, record.args = message, ()
        return True


def redact_http_client_logs() -> None:
    """Install `RedactPaths` on urllib3's loggers once, whatever logging configuration runs later."""
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactPaths) for f in logger.filters):
            logger.addFilter(RedactPaths())


redact_http_client_logs()
