-- daily_coverage: per candle series and UTC day, how many candles were expected, present, and why the rest are missing.
-- grain: one row per candle series and UTC day
-- key: database, exchange, symbol, interval, date
-- upstreams: lake_series, lake_candles, lake_training_candles, lake_collection_outages
-- partition_by: date
--
-- expected: candles opening in the day (an interval longer than a day counts where it opens).
-- missing_from_outage: missing candles whose period overlaps a recorded collector outage
-- (repairable by a backfill while the exchange still serves them).
-- missing_at_source: every other missing candle: the exchange has none for it (no trades,
-- or older than it keeps). The Dagster check `candles_complete` makes the finer split.
WITH days AS (
    SELECT CAST(d AS DATE) AS date
    FROM generate_series(CAST($start_date AS TIMESTAMP), CAST($end_date AS TIMESTAMP),
                         INTERVAL 1 DAY) AS t(d)
),
series AS (
    SELECT database, dataset, series_id, exchange, symbol, interval, interval_seconds
    FROM {{ ref('lake_series') }}
    WHERE dataset IN ('candles', 'training_candles') AND active
),
expected AS (
    SELECT s.*, d.date, unnest(generate_series(
               CAST(d.date AS TIMESTAMP),
               CAST(d.date AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 SECOND,
               to_seconds(s.interval_seconds))) AS open_time
    FROM series s CROSS JOIN days d
),
aligned AS (
    -- keep the open times on the interval's grid (weeks open on Monday, as on the exchanges)
    SELECT * FROM expected
    WHERE (epoch(open_time)::BIGINT + CASE WHEN interval = '1w' THEN 259200 ELSE 0 END)
          % interval_seconds = 0
),
present AS (
    SELECT 'realtime' AS database, exchange, symbol, interval, date, CAST(time AS TIMESTAMP) AS open_time
    FROM {{ ref('lake_candles') }} WHERE date BETWEEN $start_date AND $end_date
    UNION ALL
    SELECT 'training' AS database, exchange, symbol, interval, date, CAST(time AS TIMESTAMP) AS open_time
    FROM {{ ref('lake_training_candles') }} WHERE date BETWEEN $start_date AND $end_date
),
outages AS (
    SELECT database, series_id, CAST(start_time AS TIMESTAMP) AS start_time,
           CAST(end_time AS TIMESTAMP) AS end_time
    FROM {{ ref('lake_collection_outages') }} WHERE dataset = 'candles'
),
joined AS (
    SELECT a.*, p.open_time IS NOT NULL AS is_present,
           EXISTS (SELECT 1 FROM outages o
                   WHERE o.database = a.database AND o.series_id = a.series_id
                     AND o.start_time < a.open_time + to_seconds(a.interval_seconds)
                     AND o.end_time > a.open_time) AS in_outage
    FROM aligned a
    LEFT JOIN present p
        ON p.database = a.database AND p.exchange = a.exchange AND p.symbol = a.symbol
       AND p.interval = a.interval AND p.date = a.date AND p.open_time = a.open_time
)
SELECT database, dataset, exchange, symbol, interval, date,
       count(*) AS expected,
       count(*) FILTER (WHERE is_present) AS present,
       count(*) FILTER (WHERE NOT is_present AND NOT in_outage) AS missing_at_source,
       count(*) FILTER (WHERE NOT is_present AND in_outage) AS missing_from_outage
FROM joined
GROUP BY ALL
ORDER BY database, exchange, symbol, interval, date
