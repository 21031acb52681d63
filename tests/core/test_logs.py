"""Redaction and escaping: what every log line (and `urls.redact`) does to its text; the
JSON format's fields."""

from __future__ import annotations

import json
import logging
import re

import pytest

from kirby_core.db import urls
from kirby_core.logs import configure_logging, escape, event_fields, redact

TOKEN = "kirby_" + "A1b2-C3d4_" * 4 + "xyz"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgresql://kirby:s3cret@db:5432/kirby", "postgresql://kirby:***@db:5432/kirby"),
        ("postgresql://:pw@db/kirby", "postgresql://:***@db/kirby"),
        ("postgresql://u:p@ss@db/kirby", "postgresql://u:***@db/kirby"),
        ("postgresql://u:p@ss@db", "postgresql://u:***@db"),
        ("postgresql+psycopg2://u:p:w@db/k other@x", "postgresql+psycopg2://u:***@db/k other@x"),
        (
            "postgresql://db/kirby?user=u&password=s3cret",
            "postgresql://db/kirby?user=u&password=***",
        ),
        ("postgresql://db/kirby?sslpassword=s3&x=1", "postgresql://db/kirby?sslpassword=***&x=1"),
        ('"WebSocket /ws?api_key=abc123" [accepted]', '"WebSocket /ws?api_key=***" [accepted]'),
        ("/ws?x=1&API-KEY=abc&token=t0k", "/ws?x=1&API-KEY=***&token=***"),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer kirby_***"),
        # nothing secret: unchanged
        ("postgresql://kirby@db:5432/kirby", "postgresql://kirby@db:5432/kirby"),
        ("http://db:5432/path@x", "http://db:5432/path@x"),
        (
            "request key=42 max_tokens=5 client=1.2.3.4",
            "request key=42 max_tokens=5 client=1.2.3.4",
        ),
        (f"{TOKEN}x kirby_short", f"{TOKEN}x kirby_short"),  # not a key's length
    ],
)
def test_redact(text: str, redacted: str) -> None:
    assert redact(text) == redacted
    assert urls.redact(text) == redacted  # one function


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/a\nb", "/a\\nb"),
        ("a\r\nb\x00c\td", "a\\r\\nb\\x00c\\td"),
        ("\x1b[31mred\x7f\x85", "\\x1b[31mred\\x7f\\x85"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("café ₿ /ok", "café ₿ /ok"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


@pytest.fixture
def kirby_logging():
    """`configure(fmt)` installs Kirby's handler; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield lambda fmt: configure_logging("INFO", fmt)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_logger_is_redacted_and_one_line(kirby_logging, capsys, fmt) -> None:
    kirby_logging(fmt)
    logging.getLogger("some.library").info(
        "GET %s from %s", f"/ws?api_key={TOKEN}\nforged INFO line", "postgresql://u:p@ss@db/k"
    )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    message = json.loads(lines[0])["message"] if fmt == "json" else lines[0]
    assert TOKEN not in message and "p@ss" not in message
    assert "/ws?api_key=***" in message and "postgresql://u:***@db/k" in message


def test_a_traceback_cannot_pass_for_a_record(kirby_logging, capsys) -> None:
    kirby_logging("text")
    try:
        raise ValueError("bad path /x\n2024-05-01T00:00:00.00Z INFO    kirby_api.access: forged")
    except ValueError:
        logging.getLogger("kirby_api.errors").exception("internal error id=1")
    first, *trace = capsys.readouterr().err.splitlines()
    assert first.endswith("ERROR   kirby_api.errors: internal error id=1")
    assert trace[0] == "    Traceback (most recent call last):"
    assert trace[-2:] == [
        "    ValueError: bad path /x",
        "    2024-05-01T00:00:00.00Z INFO    kirby_api.access: forged",
    ]


def _record(msg: object, *args: object) -> logging.LogRecord:
    return logging.LogRecord("kirby_stream.flusher", logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("msg", "args", "fields"),
    [
        # the event is the `event=` field; values keep their spaces, quotes, `=` and newlines
        (
            "event=row_refused table=%s row=%r cause=%s",
            ("candles", {"note": "a b=c"}, 'bad "x"\nINFO forged'),
            {
                "event": "row_refused",
                "table": "candles",
                "row": "{'note': 'a b=c'}",
                "cause": 'bad "x"\nINFO forged',
            },
        ),
        # else the words before the first field; `%d`/`%f` values and numbers are numbers,
        # `%r` of a string the string
        (
            "request method=%s status=%d duration_ms=%.2f reason=%r code=%s ok=%s",
            ("GET", 200, 1.2345, "it's", 1000, True),
            {
                "event": "request",
                "method": "GET",
                "status": 200,
                "duration_ms": 1.23,
                "reason": "it's",
                "code": 1000,
                "ok": "True",
            },
        ),
        (
            "%s failed error=%s",
            ("catalog refresh", OSError("down")),
            {"event": "catalog refresh failed", "error": "down"},
        ),
        # a value with more than one placeholder, or around one, is its rendered text
        (
            "event=exchange_retry retry=%d/%d retry_in=%.1fs seconds=%.1f",
            (1, 3, 2.0, float("inf")),
            {"event": "exchange_retry", "retry": "1/3", "retry_in": "2.0s", "seconds": "inf"},
        ),
        # literal values, and a record without arguments is its own format string
        (
            "event=feed_stalled coins=%s action=resubscribe",
            ("BTC",),
            {"event": "feed_stalled", "coins": "BTC", "action": "resubscribe"},
        ),
        ("event=simulator_stopped", (), {"event": "simulator_stopped"}),
        # a field named like the envelope, or given twice, gets a trailing `_`
        (
            "event=channel_error message=%r level=%s event=%s",
            ("bad", "x", "y"),
            {"event": "channel_error", "message_": "bad", "level_": "x", "event_": "y"},
        ),
        # named placeholders
        (
            "saved rows=%(rows)d to=%(to)s",
            ({"rows": 3, "to": "lake"},),
            {"event": "saved", "rows": 3, "to": "lake"},
        ),
        # every value redacted, whatever its field's name
        (
            "connect url=%s token=%s key=%s n=%d",
            ("postgresql://u:pw@db/k", "abc", TOKEN, 5),
            {
                "event": "connect",
                "url": "postgresql://u:***@db/k",
                "token": "***",
                "key": "kirby_***",
                "n": 5,
            },
        ),
        # prose (a library's line, uvicorn's included) has no fields, only its message
        ("api stopped", (), {}),
        ('%s - "WebSocket %s" [accepted]', ("1.2.3.4:5", "/ws?a=1"), {}),
        ("GET %s from %s", ("/x y=1", "host"), {}),
        # a `*` width takes its argument
        ("padded %*d a=%s", (5, 3, "q"), {"event": "padded     3", "a": "q"}),
        # what `%` formatting would not render gives no fields either
        ("a=%s b=%s", ("only one",), {}),
        (ValueError("not a string a=1"), (), {}),
    ],
)
def test_event_fields(msg: object, args: tuple, fields: dict) -> None:
    assert event_fields(_record(msg, *args)) == fields


def test_json_lines_carry_the_fields_as_fields(kirby_logging, capsys) -> None:
    kirby_logging("json")
    logging.getLogger("kirby_stream.flusher").error(
        "event=row_refused table=%s row=%r cause=%s",
        "candles",
        ("BTC", "1.5"),
        f"refused at postgresql://kirby:pw@db/k?api_key={TOKEN}",
    )
    (line,) = capsys.readouterr().err.splitlines()
    event = json.loads(line)
    assert list(event) == ["time", "level", "logger", "event", "table", "row", "cause", "message"]
    assert event["time"].endswith("+00:00")
    assert (event["level"], event["logger"]) == ("ERROR", "kirby_stream.flusher")
    assert (event["event"], event["table"], event["row"]) == (
        "row_refused",
        "candles",
        "('BTC', '1.5')",
    )
    assert event["cause"] == "refused at postgresql://kirby:***@db/k?api_key=***"
    assert event["message"] == (
        "event=row_refused table=candles row=('BTC', '1.5') "
        "cause=refused at postgresql://kirby:***@db/k?api_key=***"
    )
    assert TOKEN not in line and ":pw@" not in line


def test_control_characters_cannot_break_a_json_line(kirby_logging, capsys) -> None:
    kirby_logging("json")
    hostile = 'a\nb\rc\x00d\x1b[31me\x85f\u2028g\u2029h"i\\j'
    try:
        raise ValueError(hostile)
    except ValueError:
        logging.getLogger("kirby_api.errors").exception("event=boom path=%s", hostile)
    (line,) = capsys.readouterr().err.splitlines()  # splitlines splits on \x85 and \u2028 too
    assert line.isascii()
    event = json.loads(line)
    assert event["path"] == hostile
    assert event["message"] == f"event=boom path={hostile}"
    assert event["exception"].endswith(f"ValueError: {hostile}")


def test_the_text_format_is_unchanged(kirby_logging, capsys) -> None:
    kirby_logging("text")
    logging.getLogger("kirby_stream.flusher").error(
        "event=row_refused table=%s row=%r cause=%s", "candles", ("BTC",), "bad\nvalue"
    )
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR   kirby_stream\.flusher: "
        r"event=row_refused table=candles row=\('BTC',\) cause=bad\\nvalue",
        line,
    )


def test_uvicorn_lines_are_messages_redacted_in_json(kirby_logging, capsys) -> None:
    kirby_logging("json")
    # uvicorn's own format string (protocols/websockets), with its logger's name
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws?coin=BTC&api_key={TOKEN}\nx"
    )
    (line,) = capsys.readouterr().err.splitlines()
    event = json.loads(line)
    assert list(event) == ["time", "level", "logger", "message"]
    assert event["message"] == '127.0.0.1:5000 - "WebSocket /ws?coin=BTC&api_key=***\nx" [accepted]'
