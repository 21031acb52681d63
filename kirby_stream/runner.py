"""Ways to run the collector: in the foreground until a signal, or in a background thread.

`run_until_signalled` is `kirby stream`: the first SIGTERM or SIGINT starts the orderly stop
(stop reading, drain, flush, exit), a second one cancels whatever is left.

`collector_thread` is for hosts that own the main thread, such as the Dagster op: the
collector runs on its own event loop in a thread; the host polls `wait` and reads `stats`,
and leaving the `with` block (normally or by an exception such as Dagster's interrupt)
stops the collector the same orderly way and waits for it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kirby_core.db.urls import resolve
from kirby_core.settings import Settings
from kirby_stream.collector import Collector
from kirby_stream.stats import Stats

JOIN_MARGIN_SECONDS = 5.0
"""Beyond the final flush's own deadline, how long stopping may take before giving up."""


def run_until_signalled(settings: Settings) -> None:
    collector = Collector(settings, resolve(settings).realtime)
    asyncio.run(_until_signalled(collector))


async def _until_signalled(collector: Collector) -> None:
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if stop.is_set():
            main.cancel()
        stop.set()

    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    await collector.run(stop)


class RunningCollector:
    """A collector on its own event loop in a background thread.

    Waiting is on an Event the thread sets as it ends, never on `Thread.join`: in CPython
    3.11 a join interrupted by an exception from a signal handler (Dagster's interrupt)
    releases the thread's state lock and reports a running thread as stopped.
    """

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kirby-stream", daemon=True)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self.collector.run(self._stop))
        except BaseException as exc:
            self._error = exc
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._ended.set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True while the collector still runs. Re-raises its error."""
        ended = self._ended.wait(seconds)
        if self._error is not None:
            raise self._error
        return not ended

    def stats(self, timeout: float = 5.0) -> Stats:
        async def snapshot() -> Stats:
            return self.collector.snapshot()

        return asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result(timeout)

    def stop(self) -> None:
        """Ask for the orderly stop and wait for it (bounded)."""
        if not self._ended.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
            settings = self.collector.settings
            self._ended.wait(settings.stream_shutdown_seconds + JOIN_MARGIN_SECONDS)


@contextmanager
def collector_thread(settings: Settings, collector_id: str) -> Iterator[RunningCollector]:
    collector = Collector(settings, resolve(settings).realtime, collector_id=collector_id)
    running = RunningCollector(collector)
    running.start()
    try:
        yield running
    finally:
        running.stop()
