"""Progress of long CLI work, on stderr: a bar on a terminal (tqdm), else a line at least every 10 seconds
(for logs and CI). The work reports snapshots; this module only draws them.

A scan reports ``Progress`` to its collector's ``progress``; other long work (reading runtimes, the CUR's
objects, image configs) reports ``Steps`` through ``report``, which draws nothing unless a CLI command is
``showing`` them (``serve`` never does)."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

LINE_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


@dataclass(frozen=True)
class Progress:
    """Where long work stands: accounts done of total, repositories read of those listed so far."""
    accounts_done: int
    accounts_total: int
    repositories_read: int
    repositories_listed: int
    elapsed: float
    finished: bool = False

    @property
    def seconds_left(self) -> float | None:
        """From the accounts' rate (repositories are listed as accounts are entered, so their total grows)."""
        if self.finished or not self.accounts_done or self.accounts_done >= self.accounts_total:
            return None
        return (self.accounts_total - self.accounts_done) * self.elapsed / self.accounts_done


@dataclass(frozen=True)
class Steps:
    """Where other long work stands: ``done`` of ``total`` parts of one kind (``what``: "runtime reads" ...)."""
    what: str
    done: int
    total: int
    elapsed: float

    @property
    def seconds_left(self) -> float | None:
        if not self.done or self.done >= self.total:
            return None
        return (self.total - self.done) * self.elapsed / self.done


_showing: Callable[[Steps], None] | None = None  # the CLI command's sink while it shows progress
_showing_lock = threading.Lock()


def report(steps: Steps) -> None:
    """Tells the command showing progress, if any, where this work stands (from any thread)."""
    sink = _showing
    if sink is not None:
        with _showing_lock:
            sink(steps)


@contextmanager
def showing(sink: Callable[[Steps], None]) -> Iterator[None]:
    """While inside, ``report`` draws through ``sink`` (one CLI command's long work)."""
    global _showing
    _showing = sink
    try:
        yield
    finally:
        _showing = None


class StepClock:
    """Counts the parts of one piece of work done and reports each: ``StepClock("CUR objects", 12).step()``."""

    def __init__(self, what: str, total: int, clock=time.monotonic):
        self._what, self._total, self._clock = what, total, clock
        self._started, self._done = clock(), 0
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        report(Steps(self._what, done, self._total, self._clock() - self._started))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def describe(progress: Progress | Steps) -> str:
    left = progress.seconds_left
    if isinstance(progress, Steps):
        return (f"{progress.done:,} of {progress.total:,} {progress.what}, {_duration(progress.elapsed)} elapsed"
                + (f", about {_duration(left)} left" if left is not None else ""))
    return (f"{progress.accounts_done} of {progress.accounts_total} accounts, {progress.repositories_read:,} of "
            f"{progress.repositories_listed:,} repositories read, {_duration(progress.elapsed)} elapsed"
            + (f", about {_duration(left)} left" if left is not None else ""))


class StderrProgress:
    """Callable with each snapshot; ``close()`` ends the bar. Lines are throttled; the bar redraws itself."""

    def __init__(self, what: str, stream: TextIO | None = None, every: float | None = None,
                 clock=time.monotonic):
        self._what, self._stream, self._clock = what, stream or sys.stderr, clock
        self._every = LINE_EVERY if every is None else every
        self._last = clock()
        self._bar = None
        if self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=0, desc=what, unit="repo", file=self._stream, leave=False, dynamic_ncols=True)

    def __call__(self, progress: Progress | Steps) -> None:
        if self._bar is not None:
            if isinstance(progress, Steps):
                self._bar.total, self._bar.n = progress.total, progress.done
                self._bar.set_postfix_str(progress.what, refresh=False)
            else:
                self._bar.total = progress.repositories_listed
                self._bar.n = progress.repositories_read
                self._bar.set_postfix_str(f"{progress.accounts_done}/{progress.accounts_total} accounts",
                                          refresh=False)
            self._bar.refresh()
            return
        finished = progress.finished if isinstance(progress, Progress) else progress.done >= progress.total
        if not finished and self._clock() - self._last >= self._every:  # the command says how it ended
            self._last = self._clock()
            print(f"{self._what}: {describe(progress)}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
