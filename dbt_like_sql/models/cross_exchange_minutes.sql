-- cross_exchange_minutes: per coin and minute, every venue's 1m close, each venue's perp-vs-spot basis and each venue's funding spread over Binance's.
-- grain: one row per coin and minute in which any venue has a 1m candle or settles funding (realtime database)
-- key: coin, time
-- upstreams: lake_series, lake_candles, lake_funding_rates
-- partition_by: date
-- reference_venue: binance
--
-- Columns, one per declared venue (the exchange registry: `venues(...)`, `venue_table()`),
-- whether or not the catalog collects it yet, so the schema does not change with the data:
--   <exchange>_spot_close, <exchange>_perps_close  DECIMAL(38,18): the venue's 1m close;
--   <exchange>_basis  DECIMAL(38,12), exchanges with spot and perps:
--       (perps close - spot close) / spot close, same venue and minute, a fraction
--       (0.0005 = 5 bp), the exact quotient rounded half away from zero to 12 places
--       (integer arithmetic on the closes' 1e-18 units: DuckDB divides decimals in DOUBLE);
--   <exchange>_funding_per_hour  DECIMAL(38,24): the settled funding rate of the settlement
--       at that minute, per hour (rate per settlement x the exchange's declared settlements per
--       hour: Binance's 8-hourly rate / 8, Hyperliquid's hourly one as is), a fraction;
--   <exchange>_funding_spread  DECIMAL(38,24): that minus the reference venue's (the
--       header's `reference_venue`, Binance: the deepest perps market) at the same minute,
--       so only on minutes where both settle (00, 08, 16 UTC with Binance's 8-hourly
--       funding); the reference's own spread is 0 there.
-- NULL means the venue has no such row in the lake at that minute: nothing is forward-filled
-- and no minute is dropped; basis and spread are NULL exactly when a leg is. The lake's
-- float64 closes and rates are read through their shortest text, which is the exchange's
-- decimal string again (any value of up to 15 significant digits). Prices of one coin on
-- different quotes (USD, USDT, USDC) sit side by side as the venues quote them; a venue with
-- two quotes for one coin and market type fails the run rather than pick one. The predicted
-- (live, running) funding rate is not here: it is not a settlement.
WITH series AS (
    SELECT DISTINCT dataset, exchange, symbol, coin, market_type
    FROM {{ ref('lake_series') }}
    WHERE database = 'realtime' AND dataset IN ('candles', 'funding_rates')
),
closes AS (
    SELECT s.coin, c.date, c.time, c.exchange, s.market_type,
           CASE WHEN count(*) = 1
                THEN any_value(CAST(CAST(c.close AS VARCHAR) AS DECIMAL(38, 18)))
                ELSE error(printf('cross_exchange_minutes: %d series of %s %s %s at %s; one '
                                  'quote per venue, coin and market type is allowed',
                                  count(*), c.exchange, s.coin, s.market_type, c.time))
           END AS close
    FROM {{ ref('lake_candles') }} c
    JOIN series s ON s.dataset = 'candles' AND s.exchange = c.exchange AND s.symbol = c.symbol
    WHERE c.interval = '1m' AND c.date BETWEEN $start_date AND $end_date
    GROUP BY s.coin, c.date, c.time, c.exchange, s.market_type
),
venue_closes AS (
    SELECT coin, date, time, exchange,
           max(close) FILTER (WHERE market_type = 'spot') AS spot_close,
           max(close) FILTER (WHERE market_type = 'perps') AS perps_close
    FROM closes
    GROUP BY coin, date, time, exchange
),
units AS (  -- each close as a whole number of 1e-18s
    SELECT coin, date, time, exchange,
           CAST(trunc(spot_close) AS HUGEINT) * 1000000000000000000
             + CAST((spot_close - trunc(spot_close)) * 1000000000000000000 AS HUGEINT) AS spot,
           CAST(trunc(perps_close) AS HUGEINT) * 1000000000000000000
             + CAST((perps_close - trunc(perps_close)) * 1000000000000000000 AS HUGEINT)
             AS perps
    FROM venue_closes
),
basis AS (  -- round((perps - spot) * 1e12 / spot), half away from zero; // truncates
    SELECT coin, date, time, exchange,
           CAST((2 * (perps - spot) * 1000000000000 + sign(perps - spot) * spot) // (2 * spot)
                AS DECIMAL(38, 0)) * CAST(0.000000000001 AS DECIMAL(13, 12)) AS basis
    FROM units
),
funding AS (
    SELECT s.coin, f.date, f.time, f.exchange,
           CASE WHEN count(*) = 1
                THEN CAST(any_value(CAST(CAST(f.settled_funding_rate AS VARCHAR)
                                         AS DECIMAL(38, 18)) * v.settlements_per_hour)
                          AS DECIMAL(38, 24))
                ELSE error(printf('cross_exchange_minutes: %d funding series of %s %s at %s; '
                                  'one quote per venue and coin is allowed',
                                  count(*), f.exchange, s.coin, f.time))
           END AS funding_per_hour
    FROM {{ ref('lake_funding_rates') }} f
    JOIN series s
      ON s.dataset = 'funding_rates' AND s.exchange = f.exchange AND s.symbol = f.symbol
    JOIN {{ venue_table() }} v ON v.exchange = f.exchange AND v.market_type = s.market_type
    WHERE f.settled_funding_rate IS NOT NULL AND f.date BETWEEN $start_date AND $end_date
    GROUP BY s.coin, f.date, f.time, f.exchange
),
spreads AS (
    SELECT f.coin, f.date, f.time, f.exchange, f.funding_per_hour,
           CAST(f.funding_per_hour - r.funding_per_hour AS DECIMAL(38, 24)) AS funding_spread
    FROM funding f
    LEFT JOIN funding r
      ON r.exchange = {{ header('reference_venue') }} AND r.coin = f.coin AND r.date = f.date AND r.time = f.time
),
minutes AS (
    SELECT coin, date, time FROM closes
    UNION
    SELECT coin, date, time FROM funding
),
spot_pivot AS (
    PIVOT venue_closes ON exchange IN ({{ venues('spot') }})
    USING first(spot_close) AS spot_close GROUP BY coin, date, time
),
perps_pivot AS (
    PIVOT venue_closes ON exchange IN ({{ venues('perps') }})
    USING first(perps_close) AS perps_close GROUP BY coin, date, time
),
basis_pivot AS (
    PIVOT basis ON exchange IN ({{ venues('spot', 'perps') }})
    USING first(basis) AS basis GROUP BY coin, date, time
),
funding_pivot AS (
    PIVOT spreads ON exchange IN ({{ venues('perps') }})
    USING first(funding_per_hour) AS funding_per_hour, first(funding_spread) AS funding_spread
    GROUP BY coin, date, time
)
SELECT m.coin, m.date, m.time,
       sp.* EXCLUDE (coin, date, time),
       pp.* EXCLUDE (coin, date, time),
       bp.* EXCLUDE (coin, date, time),
       fp.* EXCLUDE (coin, date, time)
FROM minutes m
LEFT JOIN spot_pivot sp USING (coin, date, time)
LEFT JOIN perps_pivot pp USING (coin, date, time)
LEFT JOIN basis_pivot bp USING (coin, date, time)
LEFT JOIN funding_pivot fp USING (coin, date, time)
ORDER BY m.coin, m.time
