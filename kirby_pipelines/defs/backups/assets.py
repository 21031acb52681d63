"""One backup asset per database, partitioned by UTC day (the day the backup closes).

Days start at the first partition of the database's own data; only recent ones are ever
run (the schedule takes yesterday; retention keeps 7 daily, 4 weekly, 12 monthly).
"""

import dagster as dg

from kirby_pipelines import backup_runs
from kirby_pipelines.partitions import DAYS
from kirby_pipelines.resources import KirbyResource


@dg.asset(
    name=backup_runs.BACKUP_ASSETS["realtime"],
    partitions_def=DAYS["realtime"],
    group_name="backups",
    kinds={"postgres"},
    description="pg_dump (custom format) of the realtime database after the day ends.",
)
def realtime_backup(
    context: dg.AssetExecutionContext, kirby: KirbyResource
) -> dg.MaterializeResult:
    return backup_runs.back_up(context, kirby, "realtime")


@dg.asset(
    name=backup_runs.BACKUP_ASSETS["training"],
    partitions_def=DAYS["training"],
    group_name="backups",
    kinds={"postgres"},
    description="pg_dump (custom format) of the training database after the day ends.",
)
def training_backup(
    context: dg.AssetExecutionContext, kirby: KirbyResource
) -> dg.MaterializeResult:
    return backup_runs.back_up(context, kirby, "training")
