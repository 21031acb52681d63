"""Order books: `books` (sampled top-N levels, partitioned by day) and `book_integrity`.

`books`: one row per trading pair and sampled second. Columns: the pair, `time` (the sample
instant, a whole UTC second), `sequence` (the exchange's update id the book had reached:
Binance `u`, Bybit `u`, OKX `seqId`, Coinbase `sequence_num`; NULL on Hyperliquid, which
has none), and the top-N levels best first as four exact `numeric[]`: `bid_prices`,
`bid_sizes`, `ask_prices`, `ask_sizes`. CHECKs: each side's prices and sizes are as many,
at most `MAX_LEVELS`, all positive; the best bid is below the best ask (a crossed book is
never stored); the time is a whole second. Why arrays: one row of four arrays is one tuple
header and four varlena headers per snapshot, where a row per level pays a 24-byte tuple
header, the pair and the time for each of the 40 levels (`bench/books/storage.py`,
bench/README.md "Issue 15: bytes per book snapshot", measured both).

Key: unique (trading_pair_id, time). As for `trades` (0008): a hypertable's unique index
`books_key`, or on a partitioned table one unique index per daily partition
(`books_pYYYYMMDD_key`, made with it; none on the parent, for `pg_restore --clean`).

Storage follows `trades`: where the market tables are hypertables, `books` is one too (1-day
chunks, compressed after 2 days, segmented by trading pair, ordered by time); otherwise it
is partitioned by RANGE (time), one partition per UTC day named `books_pYYYYMMDD`, made by
`kirby_create_book_partitions(first_day, last_day)` (a no-op on a hypertable), so retention
(`books=<N>d`) drops whole days.

`book_integrity`: one row per trading pair and minute (`time` is the minute's start): the
depth updates applied, sequence gaps found, resyncs done, crossed books seen, and
`stale_ms`, the milliseconds of that minute the book was not trustworthy (from a gap or a
lost connection until the resync's snapshot, or without updates beyond the stale limit).
A small plain table (1440 rows a pair a day) with its primary key; retention of `books`
leaves it alone, so the integrity history outlives the samples.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MAX_LEVELS = 1000
"""Levels a side a stored sample may hold (the sampled depth is a setting, default 20)."""

COLUMNS = f"""
    trading_pair_id integer NOT NULL REFERENCES trading_pairs (id),
    time timestamptz NOT NULL,
    sequence bigint,
    bid_prices numeric[] NOT NULL,
    bid_sizes numeric[] NOT NULL,
    ask_prices numeric[] NOT NULL,
    ask_sizes numeric[] NOT NULL,
    CONSTRAINT books_whole_second
        CHECK (time = date_bin('1 second', time, timestamptz '2000-01-01 00:00:00+00')),
    CONSTRAINT books_bids_paired CHECK (cardinality(bid_prices) = cardinality(bid_sizes)
        AND cardinality(bid_prices) <= {MAX_LEVELS}),
    CONSTRAINT books_asks_paired CHECK (cardinality(ask_prices) = cardinality(ask_sizes)
        AND cardinality(ask_prices) <= {MAX_LEVELS}),
    CONSTRAINT books_levels_positive CHECK (0 < ALL (bid_prices) AND 0 < ALL (bid_sizes)
        AND 0 < ALL (ask_prices) AND 0 < ALL (ask_sizes)),
    CONSTRAINT books_not_crossed CHECK (bid_prices[1] < ask_prices[1])
"""

KEY = "CREATE UNIQUE INDEX books_key ON books (trading_pair_id, time)"
"""The hypertable's key; a partitioned table's partitions each get their own (below)."""

CREATE_PARTITIONS = """
CREATE FUNCTION kirby_create_book_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    name text;
    created integer := 0;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.books'::regclass) <> 'p' THEN
        RETURN 0;  -- a hypertable makes its own chunks
    END IF;
    IF last_day - first_day > 3660 THEN
        RAISE EXCEPTION 'book partitions from % to %: more than 10 years asked',
            first_day, last_day;
    END IF;
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        name := 'books_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('public.' || name) IS NOT NULL;
        -- one creator at a time: concurrent writers would race on the same name
        PERFORM pg_advisory_xact_lock(hashtext('kirby_create_book_partitions'));
        CONTINUE WHEN to_regclass('public.' || name) IS NOT NULL;
        EXECUTE format(
            'CREATE TABLE public.%I PARTITION OF public.books FOR VALUES FROM (%L) TO (%L)',
            name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        EXECUTE format(
            'CREATE UNIQUE INDEX %I ON public.%I (trading_pair_id, time)', name || '_key', name);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$
"""

INTEGRITY = """
CREATE TABLE book_integrity (
    trading_pair_id integer NOT NULL REFERENCES trading_pairs (id),
    time timestamptz NOT NULL,
    updates integer NOT NULL,
    gaps integer NOT NULL,
    resyncs integer NOT NULL,
    stale_ms integer NOT NULL,
    crossed integer NOT NULL,
    PRIMARY KEY (trading_pair_id, time),
    CONSTRAINT book_integrity_minute
        CHECK (time = date_bin('1 minute', time, timestamptz '2000-01-01 00:00:00+00')),
    CONSTRAINT book_integrity_counts
        CHECK (updates >= 0 AND gaps >= 0 AND resyncs >= 0 AND crossed >= 0),
    CONSTRAINT book_integrity_stale_within_minute CHECK (stale_ms BETWEEN 0 AND 60000)
)
"""


def _hypertables() -> bool:
    """Whether 0001 made the market tables hypertables."""
    bind = op.get_bind()
    return bool(
        bind.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
                " AND to_regclass('timescaledb_information.hypertables') IS NOT NULL"
            )
        ).scalar_one()
        and bind.execute(
            text(
                "SELECT count(*) FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = 'public' AND hypertable_name = 'candles'"
            )
        ).scalar_one()
    )


def upgrade() -> None:
    if _hypertables():
        op.execute(f"CREATE TABLE books ({COLUMNS})")
        op.execute(KEY)
        op.execute(
            "SELECT create_hypertable('books', 'time', chunk_time_interval => interval '1 day',"
            " create_default_indexes => false)"  # books_key serves reads by pair and time
        )
        op.execute(
            "ALTER TABLE books SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'trading_pair_id',"
            " timescaledb.compress_orderby = 'time')"
        )
        op.execute("SELECT add_compression_policy('books', interval '2 days')")
    else:
        op.execute(f"CREATE TABLE books ({COLUMNS}) PARTITION BY RANGE (time)")
    op.execute(CREATE_PARTITIONS)
    op.execute(INTEGRITY)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS book_integrity")
    op.execute("DROP FUNCTION IF EXISTS kirby_create_book_partitions(date, date)")
    op.execute("DROP TABLE IF EXISTS books")
