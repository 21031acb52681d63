"""The whole platform as one set of processes: what `kirby demo` and `kirby run` start.

Order: the databases (embedded PostgreSQL unless URLs are configured; both schemas
migrated, both catalogs synced, the admin API key of `<home>/admin-api-key`, reused while
valid), then the children, each in its own
process group with its log in `<home>/logs/`: the simulator (demo only), the API and the
Dagster webserver together, the daemon once the webserver has created Dagster's storage (two
processes creating it at once race). Then, through Dagster's GraphQL API as a click in the
UI would: the catalog series become partitions, `stream_supervisor` is switched on (the
daemon launches the `stream` run) and the backfills are launched (`backfills`).

`stop` undoes all of it: the sensor off, unfinished runs terminated so the collector
flushes, every process group stopped (SIGTERM, then SIGKILL), the embedded PostgreSQL
stopped when this stack started it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

import kirby_pipelines
from kirby_cli import processes
from kirby_cli.dagster_client import DagsterClient
from kirby_cli.processes import Child, StackError
from kirby_cli.stack_backfills import Backfills
from kirby_core import locations
from kirby_core.db import embedded, migrate, retention, urls
from kirby_core.db.connection import connect
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Database, Settings
from kirby_pipelines.backfill_plans import BACKFILL_ASSETS
from kirby_sim.server import ws_origins

HOST = "127.0.0.1"
SUPERVISOR = "stream_supervisor"
READY_TIMEOUT_SECONDS = 180.0
RUNS_STOP_SECONDS = 20.0
ADMIN_KEY_FILE = "admin-api-key"


@dataclass(frozen=True)
class StackConfig:
    settings: Settings
    """What every child runs with: home, lake, exchange URLs, catalogs, database URLs."""
    dagster_port: int = 3000
    api_port: int = 8000
    sim_port: int | None = None
    """Port of `kirby sim`; None: the real exchanges of `settings`."""
    sim_speed: float = 1.0
    history_days: int = 1
    """Whole days up to yesterday backfilled at start."""
    history_assets: tuple[str, ...] = tuple(BACKFILL_ASSETS.values())
    export_lake: bool = True
    """Once the history is in, export its days to the lake and build the merged dataset."""
    owns_postgres: bool = False
    """Stop the embedded PostgreSQL at the end even if it was already running (a demo home
    belongs to the demo)."""

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def dagster_url(self) -> str:
        return f"http://{HOST}:{self.dagster_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"


def simulated(settings: Settings, sim_port: int) -> Settings:
    """`settings` with every exchange URL pointed at `kirby sim` on `sim_port`."""
    base = f"http://{HOST}:{sim_port}"
    return settings.model_copy(
        update={
            "hyperliquid_rest_url": base,
            "hyperliquid_ws_url": f"ws://{HOST}:{sim_port}/ws",
            "ws_origins": ws_origins(f"ws://{HOST}:{sim_port}"),
            "binance_spot_url": base,
            "binance_futures_url": base,
            "bybit_rest_url": base,
            "okx_rest_url": base,
            "coinbase_rest_url": base,
        }
    )


def child_environment(config: StackConfig, base: dict[str, str]) -> dict[str, str]:
    """`base` plus the KIRBY_* values of the stack, so every child sees the same settings
    (paths absolute: the children do not share the caller's idea of the current directory)."""
    s = config.settings
    env = {
        **base,
        "KIRBY_HOME": str(config.home),
        "KIRBY_LAKE_DIR": locations.absolute(s.lake_dir),
        "KIRBY_REALTIME_CATALOG": str(s.catalog_path("realtime").resolve()),
        "KIRBY_TRAINING_CATALOG": str(s.catalog_path("training").resolve()),
        "KIRBY_HYPERLIQUID_REST_URL": s.hyperliquid_rest_url,
        "KIRBY_HYPERLIQUID_WS_URL": s.hyperliquid_ws_url,
        "KIRBY_BINANCE_SPOT_URL": s.binance_spot_url,
        "KIRBY_BINANCE_FUTURES_URL": s.binance_futures_url,
        "KIRBY_BYBIT_REST_URL": s.bybit_rest_url,
        "KIRBY_OKX_REST_URL": s.okx_rest_url,
        "KIRBY_COINBASE_REST_URL": s.coinbase_rest_url,
        "KIRBY_WS_ORIGINS": json.dumps(s.ws_origins),
        # empty = unset for Settings (a value in .env must not point the stack elsewhere)
        "KIRBY_DATABASE_URL": s.database_url or "",
        "KIRBY_TRAINING_DATABASE_URL": s.training_database_url or "",
        "KIRBY_DAGSTER_DATABASE_URL": s.dagster_database_url or "",
        "KIRBY_API_HOST": HOST,
        "KIRBY_API_PORT": str(config.api_port),
        "KIRBY_STREAM_SUPERVISOR_ENABLED": "true",
        "DAGSTER_HOME": str(config.dagster_home),
        "PYTHONUNBUFFERED": "1",
    }
    return env


class Stack:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    def __init__(self, config: StackConfig, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say
        self.children: list[Child] = []
        self.databases: DatabaseUrls | None = None
        self.api_key: str | None = None
        self.dagster = DagsterClient(config.dagster_url)
        self.backfills: Backfills | None = None
        self.series: list = []
        """The active series of the realtime and the training database, once synced."""
        self._started_postgres = False

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- start -------------------------------------------------------------------------

    def start(self, env: dict[str, str]) -> None:
        """Bring everything up; `env` is the environment the children inherit."""
        config = self.config
        self._check_ports()
        config.logs.mkdir(parents=True, exist_ok=True)
        self._install_dagster_home()
        self.say("preparing the databases (migrate, sync catalogs, API key)")
        self._prepare_databases()
        child_env = child_environment(config, env)
        cwd = _project_file("workspace.yaml").parent
        if config.sim_port is not None:
            self.say(f"starting the exchange simulator on port {config.sim_port}")
            sim = self._spawn(
                "simulator",
                [
                    *_kirby(),
                    "sim",
                    "--port",
                    str(config.sim_port),
                    "--speed",
                    f"{config.sim_speed:g}",
                ],
                child_env,
                cwd,
                self._http_ok(f"http://{HOST}:{config.sim_port}/_sim/state"),
            )
            processes.wait_ready([sim], READY_TIMEOUT_SECONDS)
        self.say("starting the API and the Dagster webserver")
        api = self._spawn(
            "api",
            [*_kirby(), "api", "serve", "--port", str(config.api_port)],
            child_env,
            cwd,
            self._http_ok(f"{config.api_url}/health"),
        )
        workspace = str(cwd / "workspace.yaml")
        web = self._spawn(
            "dagster-webserver",
            [
                _bin("dagster-webserver"),
                "-h",
                HOST,
                "-p",
                str(config.dagster_port),
                "-w",
                workspace,
            ],
            child_env,
            cwd,
            self.dagster.serving,
        )
        processes.wait_ready([web, api], READY_TIMEOUT_SECONDS)
        self.say("starting the Dagster daemon")
        daemon = self._spawn(
            "dagster-daemon",
            [_bin("dagster-daemon"), "run", "-w", workspace],
            child_env,
            cwd,
            self.dagster.daemon_healthy,
        )
        processes.wait_ready([daemon], READY_TIMEOUT_SECONDS)
        self._register_partitions()
        self.say(f"switching on {SUPERVISOR} (the daemon launches the stream run)")
        self.dagster.set_sensor(SUPERVISOR, running=True)
        self.backfills = Backfills(
            self.dagster,
            self.series,
            config.history_days,
            config.history_assets,
            config.export_lake,
        )
        self.backfills.launch_history()
        self.say(f"launched backfills: {', '.join(self.backfills.titles())}")

    def _check_ports(self) -> None:
        ports = {"Dagster webserver": self.config.dagster_port, "API": self.config.api_port}
        if self.config.sim_port is not None:
            ports["simulator"] = self.config.sim_port
        for what, port in ports.items():
            with socket.socket() as probe:
                # as the servers bind: connections of a previous run in TIME_WAIT are fine
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((HOST, port))
                except OSError as exc:
                    raise StackError(f"port {port} ({what}) is not free: {exc.strerror}") from exc

    def _install_dagster_home(self) -> None:
        """DAGSTER_HOME gets the project's dagster.yaml (copied afresh at every start)."""
        self.config.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_project_file("dagster.yaml"), self.config.dagster_home / "dagster.yaml")

    def _prepare_databases(self) -> None:
        from kirby_pipelines import catalogs
        from kirby_pipelines.storage import DAGSTER_DATABASE

        settings = self.config.settings
        if not settings.database_url:
            self._started_postgres = not embedded.is_running(settings.home)
            # created here, once: the webserver and the daemon would race to create it
            embedded.start(
                settings.home,
                (embedded.REALTIME_DATABASE, embedded.TRAINING_DATABASE, DAGSTER_DATABASE),
            )
        self.databases = resolved = urls.resolve(settings)
        shared = resolved.realtime == resolved.training
        names: tuple[Database, ...] = ("realtime",) if shared else ("realtime", "training")
        wanted = {name: retention.for_database(settings, name, shared) for name in names}
        for name in names:
            if warning := migrate.upgrade(
                resolved.of(name),
                timescaledb=settings.timescaledb,
                retention=wanted[name],
                retention_setting=retention.SETTING[name],
            ):
                print(f"warning: {warning}", file=sys.stderr)
        self.series = [
            catalogs.sync(settings, resolved.of(name), name)[1] for name in ("realtime", "training")
        ]

        async def key() -> str:
            conn = await connect(resolved.realtime)
            try:
                return await admin_key(conn, self.config.home, f"{self._name()} admin")
            finally:
                await conn.close()

        self.api_key = asyncio.run(key())

    def _name(self) -> str:
        return "kirby demo" if self.config.sim_port is not None else "kirby run"

    def _register_partitions(self) -> None:
        """What the catalog assets do after their sync: partitions, and a materialization,
        so the UI sees the catalogs materialized."""
        from kirby_pipelines.catalogs import ASSETS
        from kirby_pipelines.partitions import parse_series

        for series in self.series:
            for partitions_def, keys in series.keys().items():
                # the older spelling of the same series (hyperliquid/BTC/USD/perps/1m)
                self.dagster.delete_partitions(partitions_def, [str(parse_series(k)) for k in keys])
                self.dagster.add_partitions(partitions_def, keys)
            self.dagster.report_materialization(ASSETS[series.database], f"{self._name()} sync")

    def _spawn(self, name, argv, env, cwd, ready) -> Child:
        child = processes.spawn(name, argv, self.config.logs / f"{name}.log", env, ready, cwd)
        self.children.append(child)
        return child

    @staticmethod
    def _http_ok(url: str) -> Callable[[], bool]:
        return lambda: httpx.get(url, timeout=2).status_code < 500

    # --- while running -----------------------------------------------------------------

    def check_children(self) -> None:
        """`StackError` naming a child that has died since it was ready."""
        for child in self.children:
            if not child.alive():
                raise child.failure(f"exited with code {child.process.returncode}")
            child.remember_descendants()

    def leftovers(self) -> list[int]:
        """Pids this stack started (children, their descendants) that still run."""
        pids = {c.pid for c in self.children} | {p for c in self.children for p in c.descendants}
        return sorted(pid for pid in pids if processes.running(pid))

    # --- stop --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this stack started; safe to call twice and after a failed start."""
        web = next((c for c in self.children if c.name == "dagster-webserver"), None)
        if web is not None and web.alive():
            self._stop_runs()
        if self.children:
            self.say("stopping " + ", ".join(c.name for c in reversed(self.children)))
            killed = processes.stop_children(reversed(self.children))
            if killed:
                self.say(f"killed (did not stop on SIGTERM in time): {killed}")
        self.dagster.close()
        if self._started_postgres or (
            self.config.owns_postgres and not self.config.settings.database_url
        ):
            if embedded.stop(self.config.settings.home):
                self.say("stopped the embedded PostgreSQL")
            self._started_postgres = False

    def _stop_runs(self) -> None:
        """Sensor off (no relaunch), then terminate unfinished runs so the collector flushes
        and its run ends CANCELED rather than being killed mid-write."""
        try:
            self.dagster.set_sensor(SUPERVISOR, running=False)
            runs = [r["runId"] for r in self.dagster.unfinished_runs()]
            self.dagster.terminate(runs)
            deadline = time.monotonic() + RUNS_STOP_SECONDS
            while runs and self.dagster.unfinished_runs() and time.monotonic() < deadline:
                time.sleep(0.5)
        except StackError as exc:
            self.say(f"could not stop runs through Dagster ({exc}); killing them")


async def admin_key(conn: asyncpg.Connection, home: Path, name: str) -> str:
    """The admin key saved in `<home>/admin-api-key` while it is still valid (not revoked,
    not expired, in this database), else a new one saved there: one key per home, not one
    per start."""
    from kirby_api.keys import create_key, find_key

    path = home / ADMIN_KEY_FILE
    if path.is_file():
        token = path.read_text().strip()
        found = await find_key(conn, token)
        if found is not None and found.admin and found.refusal(datetime.now(UTC)) is None:
            return token
    _, token = await create_key(conn, name, admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # an admin secret: readable by its owner only
    path.write_text(token + "\n")
    return token


def _bin(name: str) -> str:
    """An executable of this environment (the venv's bin), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found beside {sys.executable} nor on PATH")
    return found


def _kirby() -> list[str]:
    return [_bin("kirby")]


def _project_file(name: str) -> Path:
    """workspace.yaml / dagster.yaml: in the current directory, else in the checkout the
    packages were installed from."""
    for folder in (Path.cwd(), Path(kirby_pipelines.__file__).resolve().parent.parent):
        if (folder / name).is_file():
            return (folder / name).resolve()
    raise StackError(f"{name} not found: run from the Kirby repository root")
