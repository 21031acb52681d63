"""Resources and the executor shared by the batch domains (catalog, backfills, lake, models).

Runs execute in process: a backfill run covers many partitions of one series, and the
multiprocess executor would cost ~20 s per run here for nothing.
"""

import dagster as dg

from kirby_pipelines.resources import NO_PROGRESS, KirbyResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"kirby": KirbyResource(), "progress": NO_PROGRESS},
        executor=dg.in_process_executor,
    )
