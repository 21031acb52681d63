"""Exchange history into the databases: backfill assets, their checks and schedules."""
