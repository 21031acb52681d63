"""Daily backups: yesterday's partition of each database, at 00:45 UTC.

After the daily backfills (00:15) have had half an hour, so the closed day is usually
complete in the dump. One job per database: their day axes differ, and Dagster runs only
assets of one partitions definition together. The restore check runs in the same run.
"""

import dagster as dg

from kirby_pipelines.defs.backups.assets import realtime_backup, training_backup


def _daily(asset: dg.AssetsDefinition):
    name = asset.key.to_user_string()
    job = dg.define_asset_job(f"{name}_job", selection=[asset])
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"daily_{name}",
        hour_of_day=0,
        minute_of_hour=45,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Takes {name} of yesterday, then applies retention and the restore check.",
    )


daily_realtime_backup = _daily(realtime_backup)
daily_training_backup = _daily(training_backup)
