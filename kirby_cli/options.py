"""Options shared by several commands."""

import click

database_option = click.option(
    "--database",
    type=click.Choice(["realtime", "training"]),
    default="realtime",
    show_default=True,
    help="realtime: live Hyperliquid (kirby); training: historical Binance (kirby_training).",
)
