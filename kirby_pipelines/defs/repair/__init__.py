"""Gap repair: collector outages and failed completeness checks become backfill runs."""
