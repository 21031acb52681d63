"""The API's dataset names and row shapes follow `kirby_core.datasets` (no database needed)."""

from __future__ import annotations

from kirby_api import datasets as api
from kirby_api.ws import hub, protocol
from kirby_core import datasets as core


def test_websocket_channels_are_the_declared_api_names():
    assert tuple(d.api_name for d in core.DATASETS.values()) == protocol.CHANNELS


def test_every_declared_dataset_is_served_with_every_column():
    assert list(api.SERVED_DATASETS) == list(core.DATASETS)
    for name, served in api.SERVED_DATASETS.items():
        declared = core.DATASETS[name]
        assert served.channel == declared.api_name
        assert served.series_column == declared.series_column
        assert [column for _, column, _ in served.columns] == ["time", *declared.column_names]
        assert served.field_names == ("time", *(c.api for c in declared.columns))


def test_every_declared_dataset_has_a_live_update():
    assert set(hub._LIVE) == set(core.DATASETS)


def test_candles_keep_their_public_trade_count_name():
    assert api.SERVED_CANDLES.field_names[-1] == "num_trades"
    assert core.CANDLES.columns[-1].name == "trade_count"
