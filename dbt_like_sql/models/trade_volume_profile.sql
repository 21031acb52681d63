-- trade_volume_profile: per trading pair and minute, the traded volume in each price bucket.
-- grain: one row per trading pair (exchange, symbol), UTC minute and price bucket holding at least one trade (realtime database)
-- key: exchange, symbol, time, bucket_low
-- upstreams: lake_trades
-- partition_by: date
--
-- Bucket rule: a pair-minute's buckets are all one power of ten wide, chosen from the
-- minute's first trade price (by time, trade id) so that it has 4 significant digits above
-- the bucket: width = 10^(floor(log10(first price)) - 3), e.g. 64213.5 -> width 10,
-- buckets [64210, 64220); 3501.25 -> 1; 0.12345 -> 0.0001. A trade's bucket is its price
-- floored to a multiple of the width (bucket_low; the bucket is [bucket_low, bucket_low +
-- bucket_width)). Widths never go below 1e-12 (prices under 1e-9).
-- Columns: bucket_low, bucket_width DECIMAL(38,12); trades BIGINT; volume, buy_volume,
-- sell_volume DECIMAL(38,12) (base asset, by taker side). The volumes of a pair-minute's
-- buckets add up to its `volume` in trade_vwap_minutes. Prices and sizes are read as in
-- trade_vwap_minutes (at most 12 decimal places, else the run fails).
WITH trades AS (
    SELECT exchange, symbol, date, time_bucket(INTERVAL 1 MINUTE, time) AS minute, time,
           trade_id, side,
           CAST(CAST(price AS VARCHAR) AS DECIMAL(38, 18)) AS price18,
           CAST(CAST(size AS VARCHAR) AS DECIMAL(38, 18)) AS size18
    FROM {{ ref('lake_trades') }}
    WHERE date BETWEEN $start_date AND $end_date
),
units AS (  -- whole numbers of 1e-12
    SELECT exchange, symbol, date, minute, time, trade_id, side,
           CASE WHEN CAST(price18 AS DECIMAL(38, 12)) = price18 AND CAST(size18 AS DECIMAL(38, 12)) = size18
                THEN CAST(CAST(price18 AS DECIMAL(38, 12)) * 1000000000000 AS HUGEINT)
                ELSE error(printf('trade_volume_profile: trade %s of %s %s at %s has more than 12 '
                                  'decimal places (price %s, size %s)',
                                  trade_id, exchange, symbol, time, price18, size18))
           END AS price_u,
           CAST(CAST(size18 AS DECIMAL(38, 12)) * 1000000000000 AS HUGEINT) AS size_u
    FROM trades
),
widths AS (  -- digits of the first price's units (= its integer digits + 12), minus 4
    SELECT exchange, symbol, minute,
           CAST(10 ^ greatest(length(CAST(arg_min(price_u, (time, trade_id)) AS VARCHAR)) - 4, 0)
                AS HUGEINT) AS width_u
    FROM units
    GROUP BY exchange, symbol, minute
),
bucketed AS (
    SELECT u.exchange, u.symbol, u.date, u.minute, u.side, u.size_u, w.width_u,
           u.price_u // w.width_u * w.width_u AS low_u
    FROM units u JOIN widths w USING (exchange, symbol, minute)
)
SELECT exchange, symbol, date, minute AS time,
       CAST(low_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS bucket_low,
       CAST(width_u AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS bucket_width,
       count(*) AS trades,
       CAST(sum(size_u) AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS volume,
       CAST(coalesce(sum(size_u) FILTER (WHERE side = 'buy'), 0) AS DECIMAL(38, 0))
         * CAST(0.000000000001 AS DECIMAL(13, 12)) AS buy_volume,
       CAST(coalesce(sum(size_u) FILTER (WHERE side = 'sell'), 0) AS DECIMAL(38, 0))
         * CAST(0.000000000001 AS DECIMAL(13, 12)) AS sell_volume
FROM bucketed
GROUP BY exchange, symbol, date, minute, low_u, width_u
ORDER BY exchange, symbol, time, bucket_low
