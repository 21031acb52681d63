"""Dagster definitions by domain, discovered by `load_from_defs_folder`.

    stream/   the live collector as a long-running job, and the sensor that keeps it alive
    catalog/  the two catalogs as assets (sync = partitions); new_series_backfill sensor
    live/     what the collector writes, as external assets with freshness policies (and
              live_books with its two book checks); live_data
    backfills/ candles, funding_rates, training_candles (day x series), their checks and
              daily schedules
    lake/     Parquet exports per table and day, reference files, lake checks
    models/   the dbt_like_sql models as DuckDB assets, and the checks of cross_exchange_minutes
    repair/   gap_repair: outages and failed completeness checks -> backfill runs;
              live_gap_repair + the live_repair job: today's outage windows refetched
    resources.py  `kirby` and `progress` resources, the in-process executor

Every module in these folders is imported when the code location loads; keep imports cheap
and read no settings at import time.
"""
