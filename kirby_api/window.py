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
end_time, which stay bounds. A dataset with one row per series and time (candles, funding,
open interest) has cursors on the time (milliseconds); one with many rows per time (trades:
many in one millisecond) has keyed cursors on (time in microseconds, trade id), so a page
boundary inside one millisecond neither repeats nor skips a row. A cursor of one kind is
refused by a route of the other.
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
    lower_id: str | None = None
    """Keyed windows: rows at exactly `lower` must have a tiebreak above it (a next cursor's
    id); None: every row at `lower` is in."""
    upper_id: str | None = None
    """Keyed windows: rows at exactly `upper` with a tiebreak below it are in (a prev
    cursor's id); None: none at `upper` is."""

    @property
    def latest(self) -> bool:
        """The plain latest-N poll: no times, no cursor."""
        return (
            self.newest
            and self.lower == MIN_TIME
            and self.upper == MAX_TIME
            and self.lower_id is None
            and self.upper_id is None
        )


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


MAX_ID_CHARS = 256
"""Longest tiebreak (trade id) a keyed cursor carries."""
_US = 1_000_000


def encode_cursor(direction: str, moment: datetime, tiebreak: str | None = None) -> str:
    """`tiebreak` None: a time cursor (milliseconds); else a keyed one (microseconds, id)."""
    if tiebreak is None:
        raw = f"{direction}{datetime_to_ms(moment)}"
    else:
        micros = (moment - EPOCH) // _TICK
        raw = f"{direction}{micros}:{tiebreak}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str, keyed: bool = False) -> tuple[str, datetime, str | None]:
    """(direction, time, tiebreak); a keyed cursor where `keyed`, else a time cursor."""
    kind = "keyed (time, trade id)" if keyed else "time"
    try:
        padded = value + "=" * (-len(value) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        direction, rest = raw[0], raw[1:]
        number, colon, tiebreak = rest.partition(":")
        if direction not in "ab" or bool(colon) != keyed or not number.isdigit():
            raise ValueError(raw)
        if keyed:
            if len(tiebreak) > MAX_ID_CHARS or "\x00" in tiebreak:
                raise ValueError(raw)
            moment = EPOCH + timedelta(microseconds=int(number))
        else:
            moment = ms_to_datetime(int(number))
        if not MIN_TIME <= moment <= MAX_TIME:
            raise ValueError(raw)
    except (ValueError, IndexError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter(
            "cursor",
            f"cursor {shorten(value)!r} is not a {kind} cursor this API issued for this route",
            "a next_cursor or prev_cursor from an earlier response of the same route",
        ) from None
    return direction, moment, tiebreak if keyed else None


def make_window(
    start_time: str | None,
    end_time: str | None,
    limit: int,
    cursor: str | None,
    keyed: bool = False,
) -> Window:
    """`keyed`: the dataset orders rows of one time by a tiebreak (trades)."""
    start = parse_time("start_time", start_time) if start_time is not None else None
    end = parse_time("end_time", end_time) if end_time is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidParameter(
            "start_time",
            f"start_time ({start:%Y-%m-%dT%H:%M:%SZ}) is after end_time ({end:%Y-%m-%dT%H:%M:%SZ})",
            "a start_time at or before end_time",
        )
    lower, upper = start or MIN_TIME, end or MAX_TIME
    lower_id = upper_id = None
    newest = start is None
    if cursor is not None:
        direction, moment, tiebreak = decode_cursor(cursor, keyed)
        if direction == "a" and tiebreak is None:
            lower, newest = max(lower, moment + _TICK), False
        elif direction == "a":
            if moment >= lower:
                lower, lower_id = moment, tiebreak
            newest = False
        elif tiebreak is None:
            upper, newest = min(upper, moment), True
        else:
            if moment < upper:
                upper, upper_id = moment, tiebreak
            newest = True
    if upper < lower:
        upper, upper_id = lower, None
    return Window(lower, upper, limit, newest, end is None, lower_id, upper_id)


def page_cursors(
    window: Window,
    first: datetime | None,
    last: datetime | None,
    count: int,
    keyed: bool = False,
    first_id: str | None = None,
    last_id: str | None = None,
) -> tuple[str | None, str | None]:
    """(next_cursor, prev_cursor) for a page; None where the range has nothing more.
    `keyed`: keyed cursors, on the page's first and last (time, tiebreak)."""
    if first is None or last is None:
        # An empty page: polling forward can go on from the lower bound if it is open-ended.
        if window.open_ended and not window.newest and window.lower > MIN_TIME:
            if keyed:  # after (lower, id), or after nothing at lower ("" is below every id)
                return encode_cursor("a", window.lower, window.lower_id or ""), None
            return encode_cursor("a", window.lower - _TICK), None
        return None, None
    full = count >= window.limit
    more_after = window.open_ended or (full and not window.newest)
    more_before = full or not window.newest
    return (
        encode_cursor("a", last, last_id if keyed else None) if more_after else None,
        encode_cursor("b", first, first_id if keyed else None) if more_before else None,
    )
