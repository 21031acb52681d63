-- trade_vwap_minutes: per trading pair and minute, the volume-weighted average price of its trades, with count, volume and notional.
-- grain: one row per trading pair (exchange, symbol) and UTC minute with at least one trade in the lake (realtime database)
-- key: exchange, symbol, time
-- upstreams: lake_trades
-- partition_by: date
--
-- Columns:
--   trades          BIGINT: trades in the minute;
--   volume          DECIMAL(38,12): sum of sizes (base asset); buy_volume / sell_volume by
--                   the taker's side (they add up to volume);
--   notional        DECIMAL(38,24): sum of price x size (quote currency), exact;
--   vwap            DECIMAL(38,12): notional / volume, the exact quotient rounded half up
--                   to 12 places (integer arithmetic on 1e-12 units: DuckDB divides
--                   decimals in DOUBLE);
--   first_price, last_price, low_price, high_price  DECIMAL(38,12): by (time, trade_id).
-- Prices and sizes are read through their shortest text (the lake's float64 is the exchange's
-- decimal string again, up to 15 significant digits; decimal128 files are exact) and must
-- have at most 12 decimal places: a value with more fails the run instead of being rounded.
WITH trades AS (
    SELECT exchange, symbol, date, time_bucket(INTERVAL 1 MINUTE, time) AS minute, time,
           trade_id, side,
           CAST(CAST(price AS VARCHAR) AS DECIMAL(38, 18)) AS price18,
           CAST(CAST(size AS VARCHAR) AS DECIMAL(38, 18)) AS size18
    FROM {{ ref('lake_trades') }}
    WHERE date BETWEEN $start_date AND $end_date
),
units AS (  -- whole numbers of 1e-12
    SELECT *,
           CASE WHEN CAST(price18 AS DECIMAL(38, 12)) = price18 AND CAST(size18 AS DECIMAL(38, 12)) = size18
                THEN CAST(CAST(price18 AS DECIMAL(38, 12)) * 1000000000000 AS HUGEINT)
                ELSE error(printf('trade_vwap_minutes: trade %s of %s %s at %s has more than 12 '
                                  'decimal places (price %s, size %s)',
                                  trade_id, exchange, symbol, time, price18, size18))
           END AS price_u,
           CAST(CAST(size18 AS DECIMAL(38, 12)) * 1000000000000 AS HUGEINT) AS size_u
    FROM trades
),
minutes AS (
    SELECT exchange, symbol, date, minute AS time,
           count(*) AS trades,
           sum(size_u) AS volume_u,
           sum(size_u) FILTER (WHERE side = 'buy') AS buy_u,
           sum(size_u) FILTER (WHERE side = 'sell') AS sell_u,
           sum(price_u * size_u) AS notional_u,
           arg_min(price_u, (time, trade_id)) AS first_u,
           arg_max(price_u, (time, trade_id)) AS last_u,
           min(price_u) AS low_u,
           max(price_u) AS high_u
    FROM units
    GROUP BY exchange, symbol, date, minute
)
SELECT exchange, symbol, date, time, trades,
       CAST(volume_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS volume,
       CAST(coalesce(buy_u, 0) AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS buy_volume,
       CAST(coalesce(sell_u, 0) AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS sell_volume,
       CAST(CAST(notional_u AS DECIMAL(38, 0)) * CAST(0.000000000000000000000001 AS DECIMAL(25, 24)) AS DECIMAL(38, 24)) AS notional,
       -- round(notional / volume) to 1e-12 units, half up (both positive); // truncates
       CAST((2 * notional_u + volume_u) // (2 * volume_u) AS DECIMAL(38, 0))
         * CAST(0.000000000001 AS DECIMAL(13, 12)) AS vwap,
       CAST(first_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS first_price,
       CAST(last_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS last_price,
       CAST(low_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS low_price,
       CAST(high_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS high_price
FROM minutes
ORDER BY exchange, symbol, time
