"""No two modules share a name for different things (issue 13, item 5).

An AST scan of every `kirby_*` module: a public top-level name (def, class, assignment)
defined in two modules, or a module file name used in two places, fails here unless the
allow-lists below say why both are the same concept. A fact shared by two modules has one
home and is imported; a different thing gets its own name. Alembic's revision modules are
left out: Alembic requires the same names in each.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = tuple(sorted(p.name for p in ROOT.glob("kirby_*") if p.is_dir()))
SKIPPED = ("/migrations/versions/",)

ANYWHERE = {
    "log": "each module's own `logging.getLogger(__name__)`",
    "T": "a module-local TypeVar",
}
"""Names any module may define for itself."""

SIM_VENUES = {
    f"kirby_sim.{name}" for name in ("binance", "bybit", "coinbase", "hyperliquid", "okx")
}
SIM_SOCKETS = {f"kirby_sim.{name}_ws" for name in ("binance", "bybit", "coinbase", "okx")}
WIRE_MODULES = frozenset(
    f"kirby_core.exchanges.{name}_wire"
    for name in ("binance", "bybit", "coinbase", "hyperliquid", "okx")
)
WIRE_PROTOCOL = (
    "STREAMED_DATASETS",
    "POLLED_DATASETS",
    "KEEP_ALIVE",
    "LIMITS",
    "url",
    "subscription",
    "subscribe_frames",
    "unsubscribe_frames",
    "parse_frame",
    "parse_depth",
    "DEPTH",
)
"""What each exchange's wire module declares for its `registry.StreamAdapter` (`DEPTH`: its
order-book channel; `parse_depth`: its depth frames -> `kirby_core.books.BookUpdate`s)."""
WIRE_ABSENT = {"POLLED_DATASETS": ("hyperliquid_wire",), "parse_frame": ("bybit_wire", "okx_wire")}
"""Hyperliquid polls nothing; Bybit's and OKX's parsers are classes (`BybitParser`,
`OkxParser`: they keep state)."""
SIM_FORMATTERS = {f"kirby_sim.{name}" for name in ("binance_futures", "bybit", "coinbase", "okx")}

CORE_VENUES = {
    f"kirby_core.exchanges.{name}"
    for name in ("binance", "bybit", "coinbase", "hyperliquid", "okx")
}
PERP_VENUES = {f"kirby_core.exchanges.{name}" for name in ("binance", "bybit", "okx")}

SHARED: dict[str, tuple[frozenset[str], str]] = {
    "MARKET_TYPES": (
        frozenset(CORE_VENUES),
        "each exchange module declares the market types it serves",
    ),
    "WEIGHTS": (
        frozenset(CORE_VENUES - {"kirby_core.exchanges.hyperliquid"}),
        "each exchange module declares its request weights per market type",
    ),
    "WIRE_INTERVALS": (
        frozenset({f"kirby_core.exchanges.{name}" for name in ("bybit", "coinbase", "okx")}),
        "each exchange module declares its intervals' wire codes",
    ),
    "TRADE_LIMIT": (
        frozenset({"kirby_core.exchanges.binance", "kirby_core.exchanges.okx"}),
        "each exchange module declares its own trade page limit",
    ),
    "trades": (
        frozenset({"kirby_pipelines.defs.backfills.assets", "kirby_sim.hyperliquid_payloads"}),
        "the `trades` asset is named after its table; the simulator's builds Hyperliquid's "
        "trades payload",
    ),
    "DEPTH_DECODER": (
        frozenset(
            f"kirby_core.exchanges.{name}_wire"
            for name in ("binance", "bybit", "coinbase", "hyperliquid", "okx")
        ),
        "each wire module decodes its own exchange's depth frames",
    ),
    "CANDLE_LIMIT": (
        frozenset({f"kirby_core.exchanges.{name}" for name in ("coinbase", "hyperliquid", "okx")}),
        "each exchange module declares its own candle page limit",
    ),
    "FUNDING_INTERVAL": (
        frozenset(PERP_VENUES),
        "each exchange module declares how often its perps settle funding",
    ),
    "OPEN_INTEREST_PERIOD": (
        frozenset({"kirby_core.exchanges.binance", "kirby_core.exchanges.okx"}),
        "each exchange module declares the open-interest step it asks for",
    ),
    "OPEN_INTEREST_SPAN": (
        frozenset({"kirby_core.exchanges.binance", "kirby_core.exchanges.okx"}),
        "each exchange module declares how far back its open-interest history reaches",
    ),
    "parse_klines": (
        frozenset({"kirby_core.exchanges.binance", "kirby_core.exchanges.bybit"}),
        "each exchange module parses its own kline payload",
    ),
    "parse_candles": (
        frozenset({"kirby_core.exchanges.coinbase", "kirby_core.exchanges.okx"}),
        "each exchange module parses its own candle payload",
    ),
    "parse_funding": (
        frozenset(PERP_VENUES),
        "each exchange module parses its own funding-history payload",
    ),
    "parse_open_interest": (
        frozenset(PERP_VENUES),
        "each exchange module parses its own open-interest-history payload",
    ),
    "rate_limited": (
        frozenset(SIM_VENUES),
        "each simulated exchange answers a rate limit in its own exchange's format",
    ),
    "server_error": (
        frozenset(SIM_VENUES),
        "each simulated exchange answers a 5xx in its own exchange's format",
    ),
    "PREFIX": (
        frozenset({"kirby_sim.admin", "kirby_sim.bybit", "kirby_sim.coinbase", "kirby_sim.okx"}),
        "the path prefix each simulator module serves (routing and fault answers go by it)",
    ),
    "PATHS": (
        frozenset(SIM_SOCKETS - {"kirby_sim.binance_ws"}),
        "the WebSocket paths each simulated exchange serves",
    ),
    "PUSH_MS": (
        frozenset(SIM_SOCKETS - {"kirby_sim.binance_ws"}),
        "each simulated exchange's push cadence",
    ),
    "NEW_CONNECTIONS": (
        frozenset(SIM_SOCKETS),
        "each simulated exchange's limit of new WebSocket connections per IP",
    ),
    "IDLE_TIMEOUT": (
        frozenset({"kirby_sim.bybit_ws", "kirby_sim.okx_ws"}),
        "each simulated exchange's idle-connection rule",
    ),
    "price": (
        frozenset(SIM_FORMATTERS),
        "each simulated exchange prints prices its own way",
    ),
    "size": (
        frozenset(SIM_FORMATTERS),
        "each simulated exchange prints sizes its own way",
    ),
    "ticker": (
        frozenset({"kirby_sim.bybit", "kirby_sim.coinbase", "kirby_sim.okx"}),
        "each simulated exchange's ticker document",
    ),
    "candle": (
        frozenset({"kirby_sim.coinbase", "kirby_sim.hyperliquid_payloads"}),
        "each simulated exchange's candle document",
    ),
    "INTERVALS": (
        frozenset(
            CORE_VENUES - {"kirby_core.exchanges.hyperliquid"}
            | {"kirby_core.exchanges.hyperliquid_wire", "kirby_sim.bybit"}
        ),
        "each exchange module declares its own intervals and wire codes",
    ),
    "KLINE_LIMIT": (
        frozenset(
            {"kirby_core.exchanges.binance", "kirby_core.exchanges.bybit", "kirby_sim.bybit"}
        ),
        "each exchange's own kline page limit (tests/exchanges/test_registry.py checks the "
        "simulator's against the declared one)",
    ),
    "FUNDING_LIMIT": (
        frozenset(PERP_VENUES | {"kirby_sim.binance_futures", "kirby_sim.bybit", "kirby_sim.okx"}),
        "each exchange's funding-history page limit (tests/exchanges/test_registry.py checks "
        "the simulator's against the declared one)",
    ),
    "OPEN_INTEREST_LIMIT": (
        frozenset(PERP_VENUES | {"kirby_sim.binance_futures", "kirby_sim.bybit"}),
        "each exchange's open-interest-history page limit (tests/exchanges/test_registry.py "
        "checks the simulator's against the declared one)",
    ),
    "OPEN_INTEREST_DEFAULT": (
        frozenset({"kirby_sim.binance_futures", "kirby_sim.bybit"}),
        "each simulated exchange's default open-interest-history page",
    ),
    "CANDLES_LIMIT": (
        frozenset({"kirby_sim.coinbase", "kirby_sim.okx"}),
        "each simulated exchange's candle page limit",
    ),
    "GREETING": (
        frozenset({"kirby_sim.hyperliquid_ws", "kirby_core.exchanges.hyperliquid_wire"}),
        "Hyperliquid's greeting: the simulator states the wire text itself, so a collector "
        "expecting the wrong text fails against it",
    ),
    "candles_complete": (
        frozenset({"kirby_pipelines.defs.backfills.checks", "kirby_pipelines.partition_checks"}),
        "the Dagster asset check and the pure check body it runs",
    ),
    "candles_sanity": (
        frozenset({"kirby_pipelines.defs.backfills.checks", "kirby_pipelines.partition_checks"}),
        "the Dagster asset check and the pure check body it runs",
    ),
    "candles_live_agrees": (
        frozenset({"kirby_pipelines.defs.backfills.checks", "kirby_pipelines.partition_checks"}),
        "the Dagster asset check and the pure check body it runs",
    ),
    "list_starlistings": (
        frozenset({"kirby_api.routes.starlistings", "kirby_core.db.catalog_store"}),
        "the API's handler (named `list_...` by the house rule) and the store's reader of it",
    ),
    "get_starlisting": (
        frozenset({"kirby_api.routes.starlistings", "kirby_core.db.catalog_store"}),
        "the API's handler (named `get_...` by the house rule) and the store's reader of it",
    ),
    "start": (
        frozenset({"kirby_cli.db", "kirby_core.db.embedded"}),
        "`kirby db start` runs `embedded.start`",
    ),
    "stop": (
        frozenset({"kirby_cli.db", "kirby_core.db.embedded"}),
        "`kirby db stop` runs `embedded.stop`",
    ),
    "downgrade": (
        frozenset({"kirby_cli.db", "kirby_core.db.migrate"}),
        "`kirby db downgrade` runs `migrate.downgrade`",
    ),
    "sync": (
        frozenset({"kirby_cli.catalog", "kirby_pipelines.catalogs"}),
        "`kirby catalog sync` and the catalog assets' body: the one catalog sync",
    ),
    "resources": (
        frozenset({"kirby_pipelines.defs.resources", "kirby_pipelines.defs.stream.resources"}),
        "each defs folder's resources, as Dagster's `defs/<domain>/` layout names them",
    ),
} | {
    name: (
        frozenset(m for m in WIRE_MODULES if not m.endswith(WIRE_ABSENT.get(name, ("-",)))),
        "each exchange's wire module declares its live feed the same way (registry.StreamAdapter)",
    )
    for name in WIRE_PROTOCOL
}
"""Top-level names two modules may both define: the modules, and why it is one concept."""

DEFS_LAYOUT = {"assets", "checks", "jobs", "resources", "schedules", "sensors"}
"""File names of Dagster's `defs/<domain>/` layout: one per domain folder, not counted."""

MODULES: dict[str, tuple[frozenset[str], str]] = {
    "admin": (
        frozenset({"kirby_api/routes/admin.py", "kirby_sim/admin.py"}),
        "each server's own admin endpoints (the API's keys, the simulator's /_sim)",
    ),
    "binance": (
        frozenset({"kirby_core/exchanges/binance.py", "kirby_sim/binance.py"}),
        "the simulator's module per exchange mirrors kirby_core.exchanges",
    ),
    "hyperliquid": (
        frozenset({"kirby_core/exchanges/hyperliquid.py", "kirby_sim/hyperliquid.py"}),
        "the simulator's module per exchange mirrors kirby_core.exchanges",
    ),
    "bybit": (
        frozenset({"kirby_core/exchanges/bybit.py", "kirby_sim/bybit.py"}),
        "the simulator's module per exchange mirrors kirby_core.exchanges",
    ),
    "coinbase": (
        frozenset({"kirby_core/exchanges/coinbase.py", "kirby_sim/coinbase.py"}),
        "the simulator's module per exchange mirrors kirby_core.exchanges",
    ),
    "okx": (
        frozenset({"kirby_core/exchanges/okx.py", "kirby_sim/okx.py"}),
        "the simulator's module per exchange mirrors kirby_core.exchanges",
    ),
    "ratelimit": (
        frozenset({"kirby_api/ratelimit.py", "kirby_sim/ratelimit.py"}),
        "each server's own request limits (the API's per key, the simulator's weights)",
    ),
    "catalog": (
        frozenset({"kirby_cli/catalog.py", "kirby_core/catalog.py", "kirby_stream/catalog.py"}),
        "the catalog: its model (core), its commands (cli), what the collector reads of it",
    ),
    "coverage": (
        frozenset(
            {"kirby_api/coverage.py", "kirby_api/routes/coverage.py", "kirby_core/db/coverage.py"}
        ),
        "the one classifier (core), its API form and its routes",
    ),
    "database": (
        frozenset({"kirby_api/database.py", "kirby_stream/database.py"}),
        "each long-running process's own connections (the API's pool, the collector's)",
    ),
    "datasets": (
        frozenset({"kirby_api/datasets.py", "kirby_core/datasets.py"}),
        "the declarations (core) and their served form (the API's)",
    ),
    "errors": (
        frozenset({"kirby_api/errors.py", "kirby_core/db/errors.py", "kirby_core/errors.py"}),
        "each layer's errors: core's hierarchy, storage errors, the API's mapping",
    ),
    "health": (
        frozenset({"kirby_api/health.py", "kirby_api/routes/health.py"}),
        "the API's probe and its route",
    ),
    "market_data": (
        frozenset({"kirby_api/market_data.py", "kirby_api/routes/market_data.py"}),
        "the API's reads of market data and their routes",
    ),
    "status": (
        frozenset({"kirby_api/status.py", "kirby_api/routes/status.py"}),
        "the API's /status.json and its route",
    ),
}
"""Module file names used in several places, and why each use is the same concept."""


def _files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(part in f"/{path.relative_to(ROOT).as_posix()}" for part in SKIPPED)
    ]


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        name = ".".join(Path(rel).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), rel)
    return found


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def _shared_names() -> dict[str, set[str]]:
    defined: defaultdict[str, set[str]] = defaultdict(set)
    for module, tree in _modules().items():
        for name in _top_level_names(tree):
            defined[name].add(module)
    return {name: modules for name, modules in defined.items() if len(modules) > 1}


def test_the_scan_sees_the_packages() -> None:
    modules = _modules()
    assert {"kirby_core", "kirby_api", "kirby_stream", "kirby_pipelines", "kirby_cli"} <= set(
        PACKAGES
    )
    assert "DATASETS" in _top_level_names(modules["kirby_core.datasets"])
    assert "_SERIES_TABLES" not in _top_level_names(modules["kirby_core.datasets"])


def test_no_two_modules_share_a_top_level_name_for_different_things() -> None:
    unexplained = {
        name: sorted(modules)
        for name, modules in _shared_names().items()
        if name not in ANYWHERE and (name not in SHARED or modules != SHARED[name][0])
    }
    assert not unexplained, (
        "one name, several modules: import the one home of a shared fact, or rename a "
        f"different thing (or add it to SHARED with its reason): {unexplained}"
    )


def test_every_allowed_name_is_still_shared() -> None:
    shared = _shared_names()
    stale = sorted(name for name in SHARED if name not in shared)
    assert not stale, f"no longer shared, drop from SHARED: {stale}"


def test_no_two_modules_share_a_file_name_for_different_things() -> None:
    places: defaultdict[str, list[str]] = defaultdict(list)
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":  # packages: Dagster's defs/<domain>/ folders
            continue
        if rel.startswith("kirby_pipelines/defs/") and path.stem in DEFS_LAYOUT:
            continue
        places[path.stem].append(rel)
    shared = {stem: sorted(found) for stem, found in places.items() if len(found) > 1}
    unexplained = {
        stem: found
        for stem, found in shared.items()
        if stem not in MODULES or set(found) != MODULES[stem][0]
    }
    assert not unexplained, f"one module name, several modules (rename, or say why): {unexplained}"
    stale = sorted(set(MODULES) - set(shared))
    assert not stale, f"no longer shared, drop from MODULES: {stale}"
