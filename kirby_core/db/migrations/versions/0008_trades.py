"""The trade tape's table: `trades`, one row per exchange trade, partitioned by day.

Columns: trading pair, time, the exchange's trade id (text: ids are numbers on some
exchanges, UUIDs on Coinbase), price and size (exact NUMERIC), the taker's side.

Key: unique (trading_pair_id, time, trade_id). A unique key on a partitioned table (or a
hypertable) must include the partition column, so (pair, trade id) alone cannot be one. It
still deduplicates by (pair, trade id): an exchange's trade ids are unique per pair and a
trade's time never changes, so a repeated trade repeats all three columns. The order serves
both reads (one pair over a time range) and the writer's conflict checks (new trades land at
the right edge of each pair's part of the index). On a hypertable it is the unique index
`trades_key` (TimescaleDB makes each chunk's). On a partitioned table it is a unique index
per partition (`trades_pYYYYMMDD_key`, made with the partition), not one on the parent:
`pg_restore --clean` (`kirby db restore --force`) drops each partition's copy of a parent's
primary key or index before the parent's, which PostgreSQL refuses ("cannot drop inherited
constraint", "... because index trades_key requires it"). `INSERT ... ON CONFLICT DO
NOTHING` without a conflict target checks the partition's unique indexes.

Where the market tables are hypertables (as created by 0001; read here, like 0005 does),
`trades` is one too: 1-day chunks, compressed after 2 days, segmented by trading pair, ordered
by time. Otherwise it is a PostgreSQL table partitioned by RANGE (time), one partition per UTC
day named `trades_pYYYYMMDD`, so retention drops whole partitions. Partitions are made by
`kirby_create_trade_partitions(first_day, last_day)` (here, so the writer and `kirby db
migrate` share one definition; a no-op on a hypertable); there is no default partition, whose
presence would make every new partition scan it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = """
    trading_pair_id integer NOT NULL REFERENCES trading_pairs (id),
    time timestamptz NOT NULL,
    trade_id text NOT NULL,
    price numeric NOT NULL,
    size numeric NOT NULL,
    side text NOT NULL,
    CONSTRAINT trades_price_positive CHECK (price > 0),
    CONSTRAINT trades_size_positive CHECK (size > 0),
    CONSTRAINT trades_side_known CHECK (side IN ('buy', 'sell')),
    CONSTRAINT trades_trade_id_present CHECK (trade_id <> '')
"""

KEY = "CREATE UNIQUE INDEX trades_key ON trades (trading_pair_id, time, trade_id)"
"""The hypertable's key; a partitioned table's partitions each get their own (above)."""

CREATE_PARTITIONS = """
CREATE FUNCTION kirby_create_trade_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date;
    name text;
    created integer := 0;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.trades'::regclass) <> 'p' THEN
        RETURN 0;  -- a hypertable makes its own chunks
    END IF;
    IF last_day - first_day > 3660 THEN
        RAISE EXCEPTION 'trade partitions from % to %: more than 10 years asked',
            first_day, last_day;
    END IF;
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        name := 'trades_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('public.' || name) IS NOT NULL;
        -- one creator at a time: concurrent writers would race on the same name
        PERFORM pg_advisory_xact_lock(hashtext('kirby_create_trade_partitions'));
        CONTINUE WHEN to_regclass('public.' || name) IS NOT NULL;
        EXECUTE format(
            'CREATE TABLE public.%I PARTITION OF public.trades FOR VALUES FROM (%L) TO (%L)',
            name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        EXECUTE format(
            'CREATE UNIQUE INDEX %I ON public.%I (trading_pair_id, time, trade_id)',
            name || '_key', name);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$
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
        op.execute(f"CREATE TABLE trades ({COLUMNS})")
        op.execute(KEY)
        op.execute(
            "SELECT create_hypertable('trades', 'time', chunk_time_interval => interval '1 day',"
            " create_default_indexes => false)"  # trades_key serves reads by pair and time
        )
        op.execute(
            "ALTER TABLE trades SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'trading_pair_id',"
            " timescaledb.compress_orderby = 'time, trade_id')"
        )
        op.execute("SELECT add_compression_policy('trades', interval '2 days')")
    else:
        op.execute(f"CREATE TABLE trades ({COLUMNS}) PARTITION BY RANGE (time)")
    op.execute(CREATE_PARTITIONS)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS kirby_create_trade_partitions(date, date)")
    op.execute("DROP TABLE IF EXISTS trades")
