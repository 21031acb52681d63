"""The SQL models of dbt_like_sql/models as assets: deps drawn from their refs, run by
DuckDB over the lake, one daily partition per UTC day, a whole range in one run.

They follow their lake inputs by declarative automation: a day is rebuilt once any of its
partitioned inputs was rewritten (the daily exports, a re-export after a gap repair).
"""

import dagster as dg

from kirby_pipelines import lake_export
from kirby_pipelines.lake_export import days_of
from kirby_pipelines.partitions import DAILY, backfill_asset
from kirby_pipelines.resources import KirbyResource
from kirby_pipelines.sql_models import SqlModel, load_models, run_model

REFERENCE = dg.AssetSelection.assets("lake_series", "lake_collection_outages")
REBUILD = (
    dg.AutomationCondition.any_deps_updated().ignore(REFERENCE).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)

MODELS = load_models(sources=tuple(lake_export.RELATIONS))
MODEL_RELATIONS = lake_export.relations_with(MODELS)
"""Every relation a model can `ref`: the lake's tables and the models themselves."""


def build(model: SqlModel) -> dg.AssetsDefinition:
    @backfill_asset(
        name=model.name,
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(ref) for ref in model.refs],
        group_name="models",
        kinds={"duckdb", "parquet"},
        automation_condition=REBUILD,
        description=model.description,
        metadata={
            "grain": model.header["grain"],
            "key": model.header["key"],
            "partition_by": model.header["partition_by"],
            "sql": dg.MetadataValue.path(str(model.path)),
        },
    )
    def _model(context: dg.AssetExecutionContext, kirby: KirbyResource) -> dg.MaterializeResult:
        days = days_of(context)
        lake = kirby.lake()
        run = run_model(model, MODEL_RELATIONS, lake, days[0], days[-1])
        return dg.MaterializeResult(
            metadata={
                "rows": run.rows,
                "files": run.files,
                "rows_by_date": dg.MetadataValue.json(
                    {d.isoformat(): n for d, n in sorted(run.rows_by_date.items())[-60:]}
                ),
                "path": dg.MetadataValue.path(lake.uri("models", model.name)),
            }
        )

    return _model


model_assets = [build(model) for model in MODELS]
