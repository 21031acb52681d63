"""Checks of the order books the collector keeps (`live_books`): never crossed, and the
minutes its integrity rules found gaps in, reported like outages (see `book_checks`)."""

import asyncio
from datetime import UTC, datetime

import dagster as dg

from kirby_pipelines import book_checks
from kirby_pipelines.partition_checks import result
from kirby_pipelines.resources import KirbyResource


def _days(kirby: KirbyResource) -> list[book_checks.BookDay]:
    first, last = book_checks.check_days(datetime.now(UTC))
    return asyncio.run(book_checks.read_book_days(kirby.url("realtime"), first, last))


@dg.asset_check(
    asset="live_books",
    description="No stored book sample crossed, and no crossed book seen by the collector.",
)
def live_books_never_crossed(kirby: KirbyResource) -> dg.AssetCheckResult:
    return result(
        book_checks.never_crossed(_days(kirby)),
        "books never crossed (best bid below best ask), per pair and day",
    )


@dg.asset_check(
    asset="live_books",
    description="Minutes with book sequence gaps or resyncs, and books collection outages.",
)
def live_books_integrity_gaps(kirby: KirbyResource) -> dg.AssetCheckResult:
    return result(
        book_checks.integrity_gaps(_days(kirby)),
        "minutes with a sequence gap or resync (book_integrity) or inside a books collection "
        "outage, per pair and day",
        severity=dg.AssetCheckSeverity.WARN,
    )
