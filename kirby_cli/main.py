"""The `kirby` command: one entry point for every part of Kirby.

This package is the composition root: it sits above `kirby_core` and the three apps and
only wires them to the command line. Commands build `Settings` once (from `KIRBY_*`
variables and `.env`) and hand them down. A `KirbyError` ends the command with its message
and exit code 1, never a traceback.
"""

from __future__ import annotations

import click

from kirby_cli.catalog import catalog
from kirby_cli.db import db
from kirby_cli.sim import sim
from kirby_core.errors import KirbyError
from kirby_core.logs import configure_logging
from kirby_core.settings import Settings


class _KirbyGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KirbyError as exc:
            raise click.ClickException(str(exc)) from exc


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


cli.add_command(db)
cli.add_command(catalog)
cli.add_command(sim)
