"""Child processes of `kirby demo` / `kirby run`: started, probed, and stopped leaving none.

Each child gets its own session, hence its own process group: Ctrl-C in the terminal
reaches only the orchestrator, which then stops the children in order, and a group signal
also reaches what a child started (Dagster's code servers and run workers stay in the
daemon's group). Every descendant seen is remembered as well, in case one left its group.
Output goes to one log file per child; a child that dies or does not become ready is
reported with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from kirby_core.errors import KirbyError

LOG_TAIL_LINES = 25


class StackError(KirbyError):
    """A part of the stack could not be started or reached."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path
    ready: Callable[[], bool]
    """True once the child serves (an HTTP probe); called until then."""
    descendants: set[int] = field(default_factory=set)
    """Pids seen below the child, so that one that changed group is still stopped."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def remember_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.descendants |= {p.pid for p in psutil.Process(self.pid).children(recursive=True)}

    def failure(self, what: str) -> StackError:
        return StackError(f"{self.name} {what}; last lines of {self.log}:\n{tail(self.log)}")


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    env: Mapping[str, str],
    ready: Callable[[], bool],
    cwd: Path | None = None,
) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return Child(name, process, log, ready)


def wait_ready(children: Iterable[Child], timeout: float, poll: float = 0.5) -> None:
    """Wait until every child's probe passes; `StackError` naming the first that died or
    was not ready within `timeout` seconds."""
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        for child in list(pending):
            if not child.alive():
                raise child.failure(f"exited with code {child.process.returncode}")
            if _probe(child):
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            raise pending[0].failure(f"was not ready within {timeout:g} s")
        if pending:
            time.sleep(poll)


def _probe(child: Child) -> bool:
    try:
        return child.ready()
    except Exception:  # a probe failing for any reason means "not yet"
        return False


def stop_children(children: Iterable[Child], timeout: float = 15.0) -> list[int]:
    """SIGTERM each child's group, wait up to `timeout`, then SIGKILL what is left.
    Returns the pids that had to be killed."""
    children = list(children)
    for child in children:
        child.remember_descendants()
        _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_left(c) for c in children):
        time.sleep(0.2)
    killed: list[int] = []
    for child in children:
        left = _left(child)
        for pid in left:
            _kill(pid)
        killed += left
        if child.process.poll() is None:
            child.process.wait(timeout=5)
    return killed


def _left(child: Child) -> list[int]:
    """Live (non-zombie) processes of the child's group or among its descendants."""
    child.process.poll()  # reap the direct child as soon as it exits
    pids = set(child.descendants) | {child.pid}
    with contextlib.suppress(psutil.Error):
        pids |= {p.pid for p in psutil.process_iter() if _group(p.pid) == child.pid}
    return sorted(pid for pid in pids if running(pid))


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:]) or "  (empty log)"
