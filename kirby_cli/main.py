"""The `kirby` command: one entry point for every part of Kirby.

This package is the composition root: it sits above `kirby_core` and the three apps and
only wires them to the command line. Subcommands load lazily (importing Dagster or
Litestar costs seconds), so `kirby db status` pays only for what it uses. Commands build
`Settings` once (from `KIRBY_*` variables and `.env`) and hand them down. Any failure ends
the command with a few lines from `failures.explain` and exit code 1, never a traceback
(unless Kirby logs at DEBUG).
"""

from __future__ import annotations

import importlib
import logging
import traceback

import click

from kirby_cli import failures
from kirby_core.logs import configure_logging
from kirby_core.settings import Settings

COMMANDS = {
    "db": "kirby_cli.db:db",
    "catalog": "kirby_cli.catalog:catalog",
    "sim": "kirby_cli.sim:sim",
    "api": "kirby_cli.api:api",
    "apikey": "kirby_cli.api:apikey",
    "backfill": "kirby_cli.pipelines:backfill",
    "export": "kirby_cli.pipelines:export_files",
    "stream": "kirby_cli.stream:stream",
    "demo": "kirby_cli.demo:demo",
    "run": "kirby_cli.demo:run_stack",
}


class _KirbyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                traceback.print_exception(exc)
                if step_error := getattr(exc, "step_error", None):
                    click.echo(step_error.to_string(), err=True)
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            raise click.ClickException("\n".join(failures.explain(exc, settings))) from exc


@click.group(cls=_KirbyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="Override KIRBY_LOG_LEVEL.",
)
@click.version_option(package_name="kirby")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """Kirby: crypto market data (candles, funding rates, open interest) in PostgreSQL.

    Without KIRBY_DATABASE_URL, commands use Kirby's embedded PostgreSQL under .kirby/,
    starting it on first use. Every setting is a KIRBY_* environment variable (see README).
    """
    settings = Settings()
    configure_logging(log_level or settings.log_level, settings.log_format)
    ctx.obj = settings
