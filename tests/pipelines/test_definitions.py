"""All Dagster definitions load, and the batch graph is what the design says (a snapshot)."""

from __future__ import annotations

import dagster as dg

from kirby_pipelines.definitions import defs as load_defs
from kirby_pipelines.partitions import MAX_DAYS_PER_RUN

GRAPH = {  # asset -> its upstream assets
    "realtime_catalog": [],
    "training_catalog": [],
    "live_candles": ["realtime_catalog"],
    "live_funding_rates": ["realtime_catalog"],
    "live_open_interest": ["realtime_catalog"],
    "candles": ["realtime_catalog"],
    "funding_rates": ["realtime_catalog"],
    "open_interest": ["realtime_catalog"],
    "trades": ["realtime_catalog"],
    "training_candles": ["training_catalog"],
    "lake_candles": ["candles", "live_candles"],
    "lake_funding_rates": ["funding_rates", "live_funding_rates"],
    "lake_open_interest": ["live_open_interest"],
    "lake_training_candles": ["training_candles"],
    "lake_trades": ["trades"],
    "lake_books": ["realtime_catalog"],
    "trade_vwap_minutes": ["lake_trades"],
    "trade_volume_profile": ["lake_trades"],
    "lake_series": ["realtime_catalog", "training_catalog"],
    "lake_collection_outages": ["live_candles", "live_funding_rates", "live_open_interest"],
    "merged_training_dataset": [
        "lake_candles",
        "lake_funding_rates",
        "lake_open_interest",
        "lake_training_candles",
    ],
    "lake_coverage": [
        "candles",
        "funding_rates",
        "live_candles",
        "live_funding_rates",
        "live_open_interest",
        "training_candles",
    ],
    "daily_coverage": ["lake_coverage", "lake_series"],
    "cross_exchange_minutes": ["lake_candles", "lake_funding_rates", "lake_series"],
    "realtime_backup": [],
    "training_backup": [],
}
CHECKS = {
    "candles": [
        "candles_complete",
        "candles_live_agrees",
        "candles_ohlc_sane",
        "candles_timestamps_aligned",
    ],
    "funding_rates": ["funding_rates_settled_hourly"],
    "open_interest": ["open_interest_complete"],
    "trades": ["trades_agree_with_candles", "trades_ids_complete", "trades_outages"],
    "live_books": ["live_books_integrity_gaps", "live_books_never_crossed"],
    "training_candles": [
        "training_candles_complete",
        "training_candles_ohlc_sane",
        "training_candles_timestamps_aligned",
    ],
    "realtime_backup": ["realtime_backup_restores"],
    "training_backup": ["training_backup_restores"],
    "cross_exchange_minutes": [
        "cross_exchange_minutes_nulls_follow_legs",
        "cross_exchange_minutes_unique",
        "cross_exchange_minutes_values_match_lake",
    ],
    **{
        lake: [f"{lake}_rows_match", f"{lake}_unique"]
        for lake in (
            "lake_candles",
            "lake_funding_rates",
            "lake_open_interest",
            "lake_training_candles",
            "lake_trades",
            "lake_books",
        )
    },
    "trade_vwap_minutes": ["trade_vwap_minutes_matches_lake", "trade_vwap_minutes_unique"],
    "trade_volume_profile": ["trade_volume_profile_adds_up", "trade_volume_profile_unique"],
}


def test_definitions_load_with_the_expected_graph_checks_and_automation() -> None:
    definitions = load_defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()

    found = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
        if key.to_user_string() in GRAPH
    }
    assert found == {asset: sorted(deps) for asset, deps in GRAPH.items()}
    checks: dict[str, list[str]] = {}
    for check in graph.asset_check_keys:
        checks.setdefault(check.asset_key.to_user_string(), []).append(check.name)
    assert {asset: sorted(names) for asset, names in checks.items()} == CHECKS
    assert {s.name for s in definitions.sensors} >= {
        "new_series_backfill",
        "gap_repair",
        "live_gap_repair",
        "live_data",
    }
    assert {s.name for s in definitions.schedules} == {
        "daily_candles",
        "daily_funding_rates",
        "daily_training_candles",
        "daily_trades",
        "daily_realtime_backup",
        "daily_training_backup",
    }
    assert {"kirby", "progress"} <= set(definitions.resources)


def test_backfills_batch_days_of_one_series_per_run_in_process() -> None:
    definitions = load_defs()
    graph = definitions.resolve_asset_graph()
    candles = graph.get(dg.AssetKey("candles"))
    assert candles.partitions_def.partition_dimension_names == ["date", "series"]
    assert candles.backfill_policy == dg.BackfillPolicy.multi_run(MAX_DAYS_PER_RUN)
    assert graph.get(dg.AssetKey("lake_candles")).backfill_policy == dg.BackfillPolicy.single_run()
    assert definitions.executor == dg.in_process_executor
    for live in ("live_candles", "live_funding_rates", "live_open_interest"):
        assert graph.get(dg.AssetKey(live)).freshness_policy is not None
