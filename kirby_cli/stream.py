"""`kirby stream`: run the live collector in the foreground until SIGTERM or Ctrl-C.

Everything it needs comes from settings: the exchanges' WebSocket and REST URLs
(`KIRBY_HYPERLIQUID_WS_URL`, `KIRBY_WS_ORIGINS`, the `KIRBY_*_URL` REST bases), the realtime
database (embedded PostgreSQL when unset) and the `KIRBY_STREAM_*` knobs. It collects what
the realtime catalog lists as active, so run `kirby catalog sync` first. Under Dagster the
`stream` job runs the same collector; a fresh `kirby stream` counts as healthy there too.
"""

from __future__ import annotations

import click

from kirby_core.settings import Settings
from kirby_stream import run_until_signalled


@click.command("stream")
@click.pass_obj
def stream(settings: Settings) -> None:
    """Collect live candles, funding rates and open interest of every exchange in the
    realtime catalog until SIGTERM/Ctrl-C.

    On the first signal it stops reading, writes what it holds and exits within a few
    seconds; a second signal cuts that short.
    """
    run_until_signalled(settings)
