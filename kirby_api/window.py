"""Which rows a data request asks for: time parameters, limit and cursors -> a `Window`.

Times are ISO-8601 (a date, or a date-time with `Z` or an offset; naive means UTC) or unix
time: a number below 100,000,000,000 is seconds, otherwise milliseconds. Ranges are
half-open, [start_time, end_time), like every Kirby reader.

Two reading directions, one result order (ascending in time):

- forward, when `start_time` or an `after` cursor is given: the first `limit` rows from the
  lower bound on;
- newest, otherwise: the latest `limit` rows below `end_time` (or of all), so a request with
  no times is the latest-N poll.

A cursor is an opaque token for "rows after this page" (`next_cursor`, also the way to poll
for new rows) or "rows before this page" (`prev_cursor`); it combines with start_time and
end_time, which stay bounds.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kirby_api.errors import InvalidParameter, shorten
from kirby_core.timeutil import EPOCH, datetime_to_ms, ms_to_datetime

MIN_TIME = EPOCH
MAX_TIME = datetime(9999, 12, 31, tzinfo=UTC)
TIME_ALLOWED = (
    "ISO-8601 (e.g. 2024-05-01 or 2024-05-01T00:00:00Z) or unix seconds or milliseconds since 1970"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# A '+' offset a client forgot to URL-encode arrives as a space: "...T10:00:00 02:00".
_UNENCODED_PLUS = re.compile(r"([T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
_MS_THRESHOLD = 100_000_000_000
_TICK = timedelta(microseconds=1)
_MAX_SECONDS = (MAX_TIME - EPOCH).total_seconds()


@dataclass(frozen=True)
class Window:
    lower: datetime
    """Inclusive."""
    upper: datetime
    """Exclusive."""
    limit: int
    newest: bool
    """True: the latest `limit` rows below `upper`; False: the first `limit` from `lower`."""
    open_ended: bool
    """No end_time was given: new rows may still arrive after this page."""

    @property
    def latest(self) -> bool:
        """The plain latest-N poll: no times, no cursor."""
        return self.newest and self.lower == MIN_TIME and self.upper == MAX_TIME


def parse_time(parameter: str, value: str) -> datetime:
    text = value.strip()
    out_of_range = InvalidParameter(
        parameter,
        f"{parameter} {shorten(value)!r} is out of range (1970-01-01 to 9999-12-31)",
        TIME_ALLOWED,
    )
    if _NUMBER.fullmatch(text):
        number = float(text)
        seconds = number / 1000 if number >= _MS_THRESHOLD else number
        if seconds > _MAX_SECONDS:
            raise out_of_range
        return EPOCH + timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(_UNENCODED_PLUS.sub(r"\1+\2", text))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidParameter(
            parameter, f"{parameter} {shorten(value)!r} is not a time", TIME_ALLOWED
        ) from None
    if not MIN_TIME <= moment <= MAX_TIME:
        raise out_of_range
    return moment


def encode_cursor(direction: str, moment: datetime) -> str:
    raw = f"{direction}{datetime_to_ms(moment)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[str, datetime]:
    try:
        padded = value + "=" * (-len(value) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        direction, ms = raw[0], int(raw[1:])
        if direction not in "ab" or not 0 <= ms <= datetime_to_ms(MAX_TIME):
            raise ValueError(raw)
    except (ValueError, IndexError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter(
            "cursor",
            f"cursor {shorten(value)!r} is not a cursor this API issued",
            "a next_cursor or prev_cursor from an earlier response",
        ) from None
    return direction, ms_to_datetime(ms)


def make_window(
    start_time: str | None, end_time: str | None, limit: int, cursor: str | None
) -> Window:
    start = parse_time("start_time", start_time) if start_time is not None else None
    end = parse_time("end_time", end_time) if end_time is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidParameter(
            "start_time",
            f"start_time ({start:%Y-%m-%dT%H:%M:%SZ}) is after end_time ({end:%Y-%m-%dT%H:%M:%SZ})",
            "a start_time at or before end_time",
        )
    lower, upper = start or MIN_TIME, end or MAX_TIME
    newest = start is None
    if cursor is not None:
        direction, moment = decode_cursor(cursor)
        if direction == "a":
            lower, newest = max(lower, moment + _TICK), False
        else:
            upper, newest = min(upper, moment), True
    return Window(lower, max(lower, upper), limit, newest, end is None)


def page_cursors(
    window: Window, first: datetime | None, last: datetime | None, count: int
) -> tuple[str | None, str | None]:
    """(next_cursor, prev_cursor) for a page; None where the range has nothing more."""
    if first is None or last is None:
        # An empty page: polling forward can go on from the lower bound if it is open-ended.
        if window.open_ended and not window.newest and window.lower > MIN_TIME:
            return encode_cursor("a", window.lower - _TICK), None
        return None, None
    full = count >= window.limit
    more_after = window.open_ended or (full and not window.newest)
    more_before = full or not window.newest
    return (
        encode_cursor("a", last) if more_after else None,
        encode_cursor("b", first) if more_before else None,
    )
