"""Redaction and escaping: what every log line (and `urls.redact`) does to its text."""

from __future__ import annotations

import json
import logging

import pytest

from kirby_core.db import urls
from kirby_core.logs import configure_logging, escape, redact

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
