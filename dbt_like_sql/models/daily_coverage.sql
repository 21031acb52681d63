-- daily_coverage: per candle series and UTC day, how many candles were expected, present, and why the rest are missing.
-- grain: one row per candle series and UTC day
-- key: database, exchange, symbol, interval, date
-- upstreams: lake_series, lake_coverage
-- partition_by: date
--
-- The numbers are those of the one classifier, kirby_core.db.coverage (exported per day by
-- lake_coverage), the same as the API's /coverage and the Dagster check candles_complete:
-- expected: candles opening in the day (up to the last closed one);
-- unavailable_at_source: the exchange no longer serves them (or never had them);
-- no_trades: the day's last backfill found no candle at the exchange;
-- collector_outage: inside a collector outage recorded after the day's last backfill;
-- unexplained: anything else (never backfilled, or gone since). The last two are repairable.
SELECT s.database, s.dataset, s.exchange, s.symbol, s.interval, c.date,
       c.expected, c.present, c.unavailable_at_source, c.no_trades, c.collector_outage,
       c.unexplained, c.outage_minutes
FROM {{ ref('lake_coverage') }} c
JOIN {{ ref('lake_series') }} s
  ON s.database = c.database AND s.dataset = c.dataset AND s.series_id = c.series_id
WHERE s.dataset IN ('candles', 'training_candles') AND s.active
  AND c.date BETWEEN $start_date AND $end_date
ORDER BY s.database, s.exchange, s.symbol, s.interval, c.date
