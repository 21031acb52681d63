"""Lake checks, per exported day: files hold exactly the database's rows, none repeated."""

import dagster as dg

from kirby_pipelines import lake_export, partition_checks
from kirby_pipelines.resources import KirbyResource


def _lake_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{asset}_checks",
        specs=[
            dg.AssetCheckSpec(
                f"{asset}_rows_match",
                asset=asset,
                description="Every series-day file holds exactly the database's rows.",
            ),
            dg.AssetCheckSpec(
                f"{asset}_unique", asset=asset, description="No open time repeated in a file."
            ),
        ],
    )
    def _check(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
        yield from partition_checks.lake_matches_database(context, kirby, asset)

    return _check


lake_candles_checks = _lake_check("lake_candles")
lake_funding_rates_checks = _lake_check("lake_funding_rates")
lake_open_interest_checks = _lake_check("lake_open_interest")
lake_training_candles_checks = _lake_check("lake_training_candles")
lake_books_checks = _lake_check("lake_books")  # one sample per pair and second: times unique


@dg.multi_asset_check(
    name="lake_trades_checks",
    specs=[
        dg.AssetCheckSpec(
            "lake_trades_rows_match",
            asset="lake_trades",
            description="Every pair-day file holds exactly the database's trades.",
        ),
        dg.AssetCheckSpec(
            "lake_trades_unique",
            asset="lake_trades",
            description="No trade id repeated in a pair-day file.",
        ),
    ],
)
def lake_trades_checks(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    yield from lake_export.trades_lake_matches_database(context, kirby, "lake_trades")
