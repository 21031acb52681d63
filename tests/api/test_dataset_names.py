"""The API's dataset names and row shapes follow `kirby_core.datasets` (no database needed)."""

from __future__ import annotations

from kirby_api import datasets as api
from kirby_api.ws import hub, protocol
from kirby_core import datasets as core
from kirby_core.db import books as book_table
from kirby_core.db import trades as trade_table


def test_websocket_channels_are_the_declared_api_names():
    names = (
        *(d.api_name for d in core.DATASETS.values()),
        api.SERVED_TRADES.channel,
        api.SERVED_BOOKS.channel,
    )
    assert names == protocol.CHANNELS


def test_every_declared_dataset_is_served_with_every_column():
    assert list(api.SERVED_DATASETS) == [*core.DATASETS, "trades", "books"]
    for name in core.DATASETS:
        served = api.SERVED_DATASETS[name]
        declared = core.DATASETS[name]
        assert served.channel == declared.api_name
        assert served.series_column == declared.series_column
        assert [column for _, column, _ in served.columns] == ["time", *declared.column_names]
        assert served.field_names == ("time", *(c.api for c in declared.columns))


def test_every_declared_dataset_has_a_live_update():
    assert set(hub._LIVE) == {*core.DATASETS, "trades", "books"}


def test_trades_are_served_with_the_table_columns():
    assert ("trading_pair_id", *api.SERVED_TRADES.field_names) == trade_table.TRADE_COLUMNS
    assert api.SERVED_TRADES.tiebreak == "trade_id"


def test_books_are_served_with_the_table_columns():
    assert ("trading_pair_id", *api.SERVED_BOOKS.field_names) == book_table.BOOK_COLUMNS
    assert api.SERVED_BOOKS.ranged and api.SERVED_BOOKS.tiebreak is None


def test_candles_keep_their_public_trade_count_name():
    assert api.SERVED_CANDLES.field_names[-1] == "num_trades"
    assert core.CANDLES.columns[-1].name == "trade_count"
