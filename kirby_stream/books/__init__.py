"""Order books, live: per exchange its own depth connections, a local L2 book per trading
pair kept with the exchange's integrity rules (`kirby_core.books`), gaps resynced, counted
and recorded as `books` outages, top-N samples into `books` and integrity counters per pair
and minute into `book_integrity` (`kirby_core.db.books`).

Each exchange's depth channel (subscription, parser, how to resync) is its wire module's
`DEPTH`, carried by its `StreamAdapter.depth`.

    plan.py     which books: every catalog pair on an exchange with depth, per connection
    lane.py     one connection's parsing stage: books, rules, resyncs, outages
    service.py  `BookCollector`: connections, sampler, writer, heartbeat report
"""

from kirby_stream.books.service import BookCollector

__all__ = ["BookCollector"]
