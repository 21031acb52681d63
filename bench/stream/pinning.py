"""CPU pinning for the stream benchmark: the collector on one core, everything else on the
others, so its wall-clock figures are one core's throughput.

Linux only (`os.sched_setaffinity`). Pinned: this process (the collector under test: every
thread of it, and so the threads it starts later) on the first core it may use; the other
processes the benchmark starts (replay, live simulator) and the PostgreSQL server it writes
to on the remaining cores. The server is found through a connection: its backend's parent
is the postmaster, pinned with every child it has (the backends started later inherit the
postmaster's affinity). That works for any server on this machine (the embedded one or a
local URL's); a remote server, or one in another PID namespace, is left alone and said so.
`restore` puts back the affinities found.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import psutil


def available() -> list[int]:
    """The cores this process may run on, in order."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def _threads(pid: int) -> list[int]:
    try:
        return [thread.id for thread in psutil.Process(pid).threads()]
    except psutil.Error:  # the process ended
        return []


@dataclass
class Pinning:
    """What was pinned where, and the affinities to put back."""

    collector: int
    others: set[int]
    lines: list[str] = field(default_factory=list)
    started: Counter[str] = field(default_factory=Counter)
    """Processes the benchmark started and pinned, by module."""
    _saved: dict[int, set[int]] = field(default_factory=dict)

    def pin(self, pid: int, cores: set[int]) -> int:
        """Every thread of process `pid` on `cores`; how many were pinned."""
        pinned = 0
        for tid in _threads(pid):
            try:
                self._saved.setdefault(tid, os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, cores)
                pinned += 1
            except OSError:  # ended meanwhile, or not ours to pin
                pass
        return pinned

    def pin_child(self, pid: int, what: str) -> None:
        """A process the benchmark started (it inherited the collector's core)."""
        if self.pin(pid, self.others):
            self.started[what] += 1

    def started_text(self) -> str:
        counted = ", ".join(f"{what} x{count}" for what, count in sorted(self.started.items()))
        return f"processes started: {counted or 'none'} on cores {sorted(self.others)}"

    def restore(self) -> None:
        for tid, cores in self._saved.items():
            with contextlib.suppress(OSError):  # ended: nothing to put back
                os.sched_setaffinity(tid, cores)
        self._saved.clear()


async def pin_everything(url: str) -> Pinning | None:
    """Pin this process and `url`'s PostgreSQL server when at least two cores are
    available; None (nothing pinned) otherwise."""
    cores = available()
    if len(cores) < 2:
        return None
    pinning = Pinning(cores[0], set(cores[1:]))
    own = pinning.pin(os.getpid(), {pinning.collector})
    pinning.lines.append(
        f"collector: this process (pid {os.getpid()}, {own} threads) on core {pinning.collector}"
    )
    conn = await asyncpg.connect(url)
    try:  # the backend is read while connected: it ends with the connection
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = _postmaster(backend)
    finally:
        await conn.close()
    if postmaster is None:
        pinning.lines.append(
            f"PostgreSQL: not pinned (backend pid {backend} is not a process of this machine)"
        )
        return pinning
    pinning.pin(postmaster.pid, pinning.others)
    children = postmaster.children()
    for child in children:
        pinning.pin(child.pid, pinning.others)
    pinning.lines.append(
        f"PostgreSQL: postmaster (pid {postmaster.pid}) and its {len(children)} processes "
        f"(backends started later inherit it) on cores {sorted(pinning.others)}"
    )
    return pinning


def _postmaster(backend: int) -> psutil.Process | None:
    """The postmaster of a PostgreSQL backend of this machine, or None."""
    try:
        process = psutil.Process(backend)
        parent = process.parent() if process.name() == "postgres" else None
        return parent if parent is not None and parent.name() == "postgres" else None
    except psutil.Error:  # not a process here (a remote server, another PID namespace)
        return None
