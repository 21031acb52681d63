"""`kirby demo` and `kirby run`: the whole platform from one command, until Ctrl-C.

`demo` runs against the offline simulator in a home of its own (`.kirby-demo/`: its own
embedded PostgreSQL, lake and Dagster instance), so it never touches real data in
`.kirby/`. `run` is the same stack against the real exchanges with the usual settings. Both
print the URLs, an admin API key and examples, then a status screen; Ctrl-C or SIGTERM
stops every process they started (`kirby_cli.stack`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from kirby_cli.stack import ADMIN_KEY_FILE, HOST, Stack, StackConfig, simulated
from kirby_cli.stack_status import render, snapshot
from kirby_core.db import embedded
from kirby_core.settings import Settings

REFRESH_SECONDS = 5.0
"""Status refresh on a terminal; written to a file or pipe, every PIPE_REFRESH_SECONDS."""
PIPE_REFRESH_SECONDS = 30.0


def _ports(fn):
    fn = click.option(
        "--days",
        default=1,
        show_default=True,
        type=click.IntRange(1, 30),
        help="Whole days up to yesterday backfilled at start.",
    )(fn)
    fn = click.option(
        "--api-port", default=8000, show_default=True, type=int, help="Port of the API."
    )(fn)
    return click.option(
        "--dagster-port", default=3000, show_default=True, type=int, help="Port of the Dagster UI."
    )(fn)


@click.command()
@_ports
@click.option(
    "--sim-port",
    default=8765,
    show_default=True,
    type=int,
    help="Port of the exchange simulator (kirby sim).",
)
@click.option(
    "--home",
    default=Path(".kirby-demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The demo's own state: PostgreSQL, lake, Dagster instance, logs.",
)
@click.option("--reset", is_flag=True, help="Delete the demo home first and start empty.")
@click.pass_obj
def demo(
    settings: Settings,
    dagster_port: int,
    api_port: int,
    days: int,
    sim_port: int,
    home: Path,
    reset: bool,
) -> None:
    """Run the whole platform against the offline exchange simulator, until Ctrl-C.

    Starts PostgreSQL, the simulator, the API, the Dagster webserver and daemon; the stream
    run collects live data, a short backfill fills yesterday, the lake and the merged
    dataset follow. Nothing is read from or written to .kirby/.
    """
    if reset and home.exists():
        embedded.stop(home)
        shutil.rmtree(home)
    demo_settings = settings.model_copy(
        update={
            "home": home,
            "lake_dir": str(home / "lake"),
            "database_url": None,
            "training_database_url": None,
            "dagster_database_url": None,
        }
    )
    config = StackConfig(
        settings=simulated(demo_settings, sim_port),
        dagster_port=dagster_port,
        api_port=api_port,
        sim_port=sim_port,
        history_days=days,
        owns_postgres=True,
    )
    _serve(
        config, "Kirby demo: five simulated exchanges (Hyperliquid, Binance, Bybit, OKX, Coinbase)"
    )


@click.command("run")
@_ports
@click.pass_obj
def run_stack(settings: Settings, dagster_port: int, api_port: int, days: int) -> None:
    """Run the whole platform against the real exchanges, until Ctrl-C.

    The same stack as `kirby demo` with your settings (KIRBY_* / .env; the embedded
    PostgreSQL in .kirby/ unless KIRBY_DATABASE_URL is set) and Hyperliquid and Binance over
    the internet.
    """
    config = StackConfig(
        settings=settings, dagster_port=dagster_port, api_port=api_port, history_days=days
    )
    _serve(
        config,
        "Kirby: live Hyperliquid, Binance, Bybit, OKX and Coinbase; Binance training history",
    )


def _serve(config: StackConfig, title: str) -> None:
    # SIGTERM and a closed terminal stop like Ctrl-C; SIGINT set explicitly, as a shell may
    # start us ignoring it
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe otherwise
    stack = Stack(config, say=lambda line: _echo(f"  . {line}"))
    _echo(f"{title}; starting (about a minute)")
    try:
        stack.start(dict(os.environ))
        banner = _banner(stack, title)
        _echo(banner)
        _watch(stack, banner)
    except KeyboardInterrupt:
        _echo("\nCtrl-C: stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # let the shutdown finish
        stack.stop()
        left = stack.leftovers()
        _echo(f"still running: {left}" if left else "stopped; no process left behind")


def _echo(text: str) -> None:
    """Print, but never let a closed terminal or pipe (`make demo | tee`, then Ctrl-C)
    abort the shutdown that follows."""
    with contextlib.suppress(OSError):
        click.echo(text)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch(stack: Stack, banner: str) -> None:
    tty = sys.stdout.isatty()
    refresh = REFRESH_SECONDS if tty else PIPE_REFRESH_SECONDS
    lake = Path(stack.config.settings.lake_dir)
    while True:
        stack.check_children()
        if stack.backfills is not None:
            stack.backfills.step()
        screen = render(snapshot(stack), datetime.now(UTC), refresh, lake)
        _echo(f"\033[H\033[J{banner}\n{screen}" if tty else f"\n{screen}")
        time.sleep(refresh)


def _banner(stack: Stack, title: str) -> str:
    config, key = stack.config, stack.api_key
    api = config.api_url
    star = stack.series[0].starlistings[0]
    path = "/".join(str(star.key).split("/"))
    pair = "/".join(str(star.key).split("/")[:4])
    logs = ", ".join(c.log.name for c in stack.children)
    lines = [
        "",
        f"{title} is running (home {config.home})",
        "",
        f"  Dagster UI    {config.dagster_url}   (the stream run, backfills, assets)",
        f"  API docs      {api}/schema",
        f"  status page   {api}/status   (JSON: {api}/status.json)",
        f"  live chart    {api}/chart?api_key={key}",
    ]
    if config.sim_port is not None:
        lines.append(f"  simulator     http://{HOST}:{config.sim_port}/_sim/state")
    lines += [
        "",
        f"  admin API key {key}   (reused from {config.home / ADMIN_KEY_FILE} while valid)",
        "",
        f'  curl -H "X-API-Key: {key}" "{api}/candles/{path}?limit=5"',
        f'  curl -H "X-API-Key: {key}" "{api}/funding/{pair}?limit=5"',
        f"  WebSocket: ws://{HOST}:{config.api_port}/ws?api_key={key}  then send",
        f'    {{"action": "subscribe", "starlisting_ids": [{star.id}], "history": 5}}',
        "",
        f"  logs          {config.logs}/: {logs}",
        "",
    ]
    return "\n".join(lines)
