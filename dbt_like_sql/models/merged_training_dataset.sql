-- merged_training_dataset: the ML-ready table: every candle with the funding and open interest of its open minute.
-- grain: one row per candle: (database, exchange, symbol, interval, time)
-- key: database, exchange, symbol, interval, time
-- upstreams: lake_candles, lake_funding_rates, lake_open_interest, lake_training_candles
-- partition_by: database, exchange, symbol, interval, date
--
-- Candles are the base (LEFT JOINs): a minute without funding or open interest keeps NULLs,
-- nothing is forward-filled. Funding and OI rows are one per trading pair and minute and
-- join on the candle's open time, so a 15m candle carries the values of its first minute.
-- `settled_funding_rate` is the rate paid for the hour (from the exchange's history, on the
-- hour only); `predicted_funding_rate` is the live feed's running rate for the current hour.
-- The training database holds Binance candles only: its funding and OI columns are NULL.
WITH candles AS (
    SELECT 'realtime' AS database, exchange, symbol, interval, date, time,
           {{ columns('lake_candles') }}
    FROM {{ ref('lake_candles') }}
    WHERE date BETWEEN $start_date AND $end_date
    UNION ALL
    SELECT 'training' AS database, exchange, symbol, interval, date, time,
           {{ columns('lake_training_candles') }}
    FROM {{ ref('lake_training_candles') }}
    WHERE date BETWEEN $start_date AND $end_date
),
funding AS (
    SELECT exchange, symbol, date, time, {{ columns('lake_funding_rates') }}
    FROM {{ ref('lake_funding_rates') }}
    WHERE date BETWEEN $start_date AND $end_date
),
open_interest AS (
    SELECT exchange, symbol, date, time, {{ columns('lake_open_interest') }}
    FROM {{ ref('lake_open_interest') }}
    WHERE date BETWEEN $start_date AND $end_date
)
SELECT c.database, c.exchange, c.symbol, c.interval, c.date, c.time,
       {{ columns('lake_candles', 'c') }},
       {{ columns('lake_funding_rates', 'f') }},
       -- open interest by name: its `notional` is renamed beside the candles' columns
       o.open_interest, o.notional AS open_interest_notional, o.day_base_volume,
       o.day_notional_volume
FROM candles c
LEFT JOIN funding f
    ON c.database = 'realtime' AND f.exchange = c.exchange AND f.symbol = c.symbol
   AND f.date = c.date AND f.time = c.time
LEFT JOIN open_interest o
    ON c.database = 'realtime' AND o.exchange = c.exchange AND o.symbol = c.symbol
   AND o.date = c.date AND o.time = c.time
ORDER BY c.database, c.exchange, c.symbol, c.interval, c.time
