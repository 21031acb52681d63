"""Structured logging: one event per line, `key=value` text or JSON.

Messages follow `"event words key=value key=value"`; the JSON format keeps the same message
and adds time, level and logger. Every record, Kirby's or a library's (uvicorn's WebSocket
handshake lines carry the full URL), passes through `redact` in both formats, so secrets
never reach a log: URL passwords, `api_key=`/`password=`/`token=`-style parameters and Kirby
API keys become `***`. The text format also `escape`s control characters, so a value such as
a request path with `%0A` cannot start a line of its own, and indents tracebacks; JSON
escapes them by itself.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

# user:password@ in a URL; the password runs to the authority's last `@`, so an unescaped
# `@` inside it is hidden too, and may follow an empty user (`postgresql://:pw@host`).
_URL_PASSWORD = re.compile(r"(://[^\s:/?#@]*:)[^\s/?#]*@")
# a parameter named like a secret: `?api_key=…`, `&sslpassword=…`, `token=…`
_SECRET_NAMES = ("apikey=", "api_key=", "api-key=", "passwd=", "password=", "secret=", "token=")
_SECRET_PARAMETER = re.compile(
    "(?i)(" + "|".join(map(re.escape, _SECRET_NAMES)) + r")[^\s&#;,'\"]+"
)
_API_KEY = re.compile(r"kirby_[\w-]{43}(?![\w-])")  # exactly a token's length
# C0, DEL, C1 and the Unicode line/paragraph separators: what can break or forge a line
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def redact(text: str) -> str:
    """`text` with every secret Kirby recognises replaced by `***`."""
    # every record passes here: search (cheap, patterns led by a literal) before sub
    if _URL_PASSWORD.search(text):
        text = _URL_PASSWORD.sub(r"\1***@", text)
    lowered = text.lower()
    if any(name in lowered for name in _SECRET_NAMES):  # cheaper than a case-blind search
        text = _SECRET_PARAMETER.sub(r"\1***", text)
    if _API_KEY.search(text):
        text = _API_KEY.sub("kirby_***", text)
    return text


def escape(text: str) -> str:
    """`text` on one line: control characters written as `\\n`, `\\x1b`, `\\u2028`..."""
    if text.isprintable():  # the usual case, decided in C
        return text
    return CONTROL.sub(lambda m: _NAMED.get(c := m.group(), ascii(c)[1:-1]), text)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        message = escape(redact(record.getMessage()))
        line = f"{moment[:-4]}Z {record.levelname:<7} {record.name}: {message}"
        if record.exc_info:
            # indented, so no line of a traceback (its message may quote a client's input)
            # can pass for a record of its own
            trace = redact(self.formatException(record.exc_info)).split("\n")
            line += "".join(f"\n    {escape(part)}" for part in trace)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            event["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(event)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is when a record is emitted, so a handler installed
    under a test runner's temporary stderr never writes to a closed stream."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install Kirby's handler on the root logger, replacing an earlier Kirby handler only."""
    handler = _StderrHandler()
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter that is useless at INFO
    for name in ("alembic", "asyncio", "websockets", "urllib3", "pgserver"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
