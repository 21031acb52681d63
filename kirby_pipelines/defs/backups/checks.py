"""The restore check: the newest backup restores, with the rows it was taken with."""

import dagster as dg

from kirby_pipelines import backup_runs
from kirby_pipelines.defs.backups.assets import realtime_backup, training_backup
from kirby_pipelines.resources import KirbyResource

RESTORE_CHECK_DESCRIPTION = (
    "Restores the newest backup into a scratch database and compares rows per table with "
    "the counts taken in the dumped snapshot."
)


@dg.asset_check(asset=realtime_backup, description=RESTORE_CHECK_DESCRIPTION)
def realtime_backup_restores(kirby: KirbyResource) -> dg.AssetCheckResult:
    return backup_runs.restores(kirby, "realtime")


@dg.asset_check(asset=training_backup, description=RESTORE_CHECK_DESCRIPTION)
def training_backup_restores(kirby: KirbyResource) -> dg.AssetCheckResult:
    return backup_runs.restores(kirby, "training")
