"""Reconnect and flush retries: exponential, jittered, capped, reset when healthy again."""

from __future__ import annotations

import asyncio

import pytest

from kirby_stream.backoff import Backoff, pause


def test_delays_double_within_jitter_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(cap=4.0, base=0.5)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next_delay() <= ceiling
    for _ in range(2000):  # far past any float overflow of 2**n
        assert backoff.next_delay() <= 4.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_jitter_spreads_collectors_that_fail_together() -> None:
    assert len({Backoff(cap=30.0).next_delay() for _ in range(20)}) > 10


@pytest.mark.parametrize("set_first", [True, False])
async def test_pause_ends_early_when_stopped(set_first: bool) -> None:
    stop = asyncio.Event()
    if set_first:
        stop.set()
    assert await pause(stop, 0.01 if not set_first else 60) is set_first
