"""Schemathesis over the served OpenAPI schema: no input produces a 500, and every response
matches what the schema documents (status codes, content types, bodies).

Each operation gets a fixed number of generated cases, valid and invalid (no deadline, no
example database), so the whole run stays well under a minute. The app runs with auth off
so every route, admin included, is reachable with generated data, on a catalog with some
candles in it. Random path segments almost never name a real series, so most valid cases
get their series path from the catalog: generated times, cursors, limits and formats then
reach the handlers instead of stopping at a 404. (Schemathesis' `from_fixture` loader does
not work with pytest 9, so the operations are driven from one test.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from kirby_api import create_app
from kirby_core.db.trades import write_trades
from tests.api.conftest import api_settings, write_candles
from tests.api.test_trades import tape

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


SERIES = [
    {"exchange": "hyperliquid", "coin": coin, "quote": "USD", "market_type": "perps", "interval": i}
    for coin in ("BTC", "SOL")
    for i in ("1m", "4h")
]


def with_real_series(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Most cases: the generated case with a real series in its path."""

    def pick(case, series):
        names = set(case.path_parameters or ())
        if series is not None and names & set(series):
            case.path_parameters = {k: series.get(k, v) for k, v in case.path_parameters.items()}
        return case

    return st.builds(pick, strategy, st.sampled_from([*SERIES, None]))


async def test_no_input_breaks_the_api(settings, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(50))
    await write_trades(conn, tape(catalog["BTC"]))
    app = create_app(
        api_settings(settings, api_auth_enabled=False, api_rate_limit_per_minute=1_000_000)
    )
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15  # /trades and /books included; one /coverage of pairs
    try:
        for operation in operations:
            has_inputs = any((operation.path_parameters, operation.query, operation.body))
            modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * has_inputs
            for mode in modes:
                strategy = operation.as_strategy(generation_mode=mode)
                if mode == GenerationMode.POSITIVE:
                    strategy = with_real_series(strategy)

                @given(case=strategy)
                @hypothesis_settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                def run(case) -> None:
                    case.call_and_validate(checks=CHECKS)

                run()
    finally:
        schemathesis.python.asgi.shutdown_lifespans()
