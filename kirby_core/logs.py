"""Structured logging: one event per line, `key=value` text or JSON.

Kirby's messages follow `"event words key=%s key=%d"` (the collector's start with
`event=name`): the format string declares the event's fields once, and both formats derive
from it. The text format prints the rendered message for people. The JSON format writes
time, level, logger, `event` (the `event=` field, else the words before the first field),
each field as a JSON field and the rendered `message`; a line without fields (a library's
prose, such as uvicorn's) has only its `message`.

Why fields come from the format string and not from elsewhere: parsing the *rendered*
message would let a value with spaces, quotes or `=` (an exception's text, a repr) split
into fake fields, and `extra={...}` would make every call site name each field twice, once
for people and once for machines. The format string is written by a developer, so a field
ends where its placeholder ends whatever the value holds; call sites stay as they are.
A field whose whole value is one `%d`/`%f`-style placeholder, or a bare `%s`/`%r` of a
number, becomes a JSON number; a bare `%s`/`%r` of a string the string itself (JSON quotes
it, as `%r` did for people); anything else the rendered text. A field named like the
envelope (`message=`) or given twice gets a trailing `_`. A record without arguments is its
own format string.

Every record, Kirby's or a library's (uvicorn's WebSocket handshake lines carry the full
URL), passes through `redact` in both formats, every JSON field value included, so secrets
never reach a log: URL passwords, `api_key=`/`password=`/`token=`-style parameters and Kirby
API keys become `***`. The text format also `escape`s control characters, so a value such as
a request path with `%0A` cannot start a line of its own, and indents tracebacks; JSON
escapes them by itself (non-ASCII included, so U+2028 cannot end a line either).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, TextIO, TypeAlias

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


# a printf placeholder as `%` formatting reads it: `%s`, `%(name)r`, `%-8.3f`, `%*d`, `%%`
_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<conv>[diouxXeEfFgGcrsa%])"
)
# a field of a format string: `key=` at the start or after a space, its value up to the next
# space (placeholders included, so a value's spaces are the value's)
_FIELD = re.compile(r"(?<!\S)([A-Za-z_]\w*)=(\S*)")
_NUMBER_CONVERSIONS = frozenset("dieEfFgG")
_ENVELOPE = frozenset(("time", "level", "logger", "event", "message", "exception"))
Value: TypeAlias = str | int | float


class _Segment(NamedTuple):
    key: str | None  # a field's; None: the event words before the first field; "": other words
    template: str
    arguments: int  # the positional arguments it consumes
    conversion: str | None  # its placeholder's, when the whole value is one bare placeholder
    name: str | None  # that placeholder's mapping key, `%(name)s`


@lru_cache(maxsize=1024)
def _segments(template: str) -> tuple[_Segment, ...]:
    """`template` cut into its event words and fields; () when it has no field."""

    def segment(key: str | None, text: str) -> _Segment:
        placeholders = [p for p in _PLACEHOLDER.finditer(text) if p["conv"] != "%"]
        arguments = sum(1 + p.group().count("*") for p in placeholders)
        whole = placeholders[0] if len(placeholders) == 1 else None
        if whole is None or whole.span() != (0, len(text)) or "*" in whole.group():
            return _Segment(key, text, arguments, None, None)
        return _Segment(key, text, arguments, whole["conv"], whole["name"])

    fields = list(_FIELD.finditer(template))
    if not fields:
        return ()
    named = any(m[1] == "event" for m in fields)
    segments = [segment("" if named else None, template[: fields[0].start()].strip())]
    for field, following in zip(fields, [*fields[1:], None], strict=True):
        segments.append(segment(field[1], field[2]))
        gap = template[field.end() : following.start() if following else len(template)]
        if gap.strip():
            segments.append(segment("", gap))
    return tuple(segments)


def _value(segment: _Segment, args: Any) -> Value:
    if args is None:  # no arguments: logging leaves the message as written
        return segment.template
    text: str = segment.template % args
    if segment.conversion in _NUMBER_CONVERSIONS:
        number = float(text) if any(c in text for c in ".eEn") else int(text)
        return number if math.isfinite(number) else text
    if segment.conversion in ("s", "r", "a"):
        argument = args[segment.name] if isinstance(args, Mapping) else args[0]
        if isinstance(argument, str):
            return argument
        if isinstance(argument, int | float) and not isinstance(argument, bool):
            return argument if math.isfinite(argument) else text
    return text


def _redacted(key: str, value: Value) -> Value:
    # as the text line shows it: `token=abc` is a secret whatever the value looks like
    text = value if isinstance(value, str) else str(value)
    shown = redact(f"{key}={text}")[len(key) + 1 :]
    return value if shown == text else shown


def event_fields(record: logging.LogRecord) -> dict[str, Value]:
    """The event and fields `record`'s format string declares, redacted; {} if it has none."""
    segments = _segments(record.msg) if isinstance(record.msg, str) else ()
    args: Any = record.args or None
    if not segments or (
        isinstance(args, tuple) and sum(s.arguments for s in segments) != len(args)
    ):
        return {}  # then the message alone is right
    fields: dict[str, Value] = {}
    position = 0
    try:
        for s in segments:
            taken = args
            if isinstance(args, tuple):
                taken = args[position : position + s.arguments]
                position += s.arguments
            if s.key == "":
                continue
            key, value = s.key or "event", _value(s, taken)
            if s.key is None and not value:
                continue
            while key in fields or (key in _ENVELOPE and key != "event"):
                key += "_"
            fields[key] = _redacted(key, value)
    except (TypeError, ValueError, KeyError):
        return {}  # as getMessage, which the message field shows, would not have formatted it
    return fields


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Value] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
        }
        event.update(event_fields(record))
        event["message"] = redact(record.getMessage())
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
