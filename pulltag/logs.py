"""Logging setup shared by both processes: text (default) or JSON lines, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# Anything shaped like a credential is masked before a line is written, as a second line of defence:
# the code never logs secrets on purpose, but exception texts from libraries may carry URLs or headers.
# user:password@ in a URL: the one pattern, used for log lines and for naming a store URL in errors.
# The password part may hold whitespace (a Redis URL's password need not be percent-encoded).
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):[^@/]*@")
_REDACTIONS = [
    (_URL_PASSWORD, r"\1:***@"),
    (re.compile(r"(?i)(authorization:\s*)(basic|bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1\2 ***"),
    (
        re.compile(
            r"(?i)\b(password|passwd|token|access_token|refresh_token|identitytoken|secret)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"
        ),
        r"\1\2***",
    ),
]


def redact_url(url: str) -> str:
    """The URL with any password replaced, so it can be named in errors and logs."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def clip(text: str, limit: int = 300) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` characters with "..."."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loggable(text: str, limit: int = 0) -> str:
    """`text` with every non-printable character (CR, LF, other controls, separators) escaped as in
    `repr`, so untrusted text stays on one log line; cut to `limit` characters (0: no cut)."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """An exception as one short log line."""
    return loggable(str(exc) or type(exc).__name__, 300)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with `extra={"fields": {...}}` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update({str(k): v for k, v in fields.items()})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str, ensure_ascii=False))


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for a process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
