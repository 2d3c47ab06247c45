"""Progress of long CLI work, on stderr: a bar on a terminal (tqdm), else a line at least every 10 seconds
(for logs and CI). The work reports snapshots; this module only draws them."""
from __future__ import annotations

import sys
import time
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


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def describe(progress: Progress) -> str:
    left = progress.seconds_left
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

    def __call__(self, progress: Progress) -> None:
        if self._bar is not None:
            self._bar.total = progress.repositories_listed
            self._bar.n = progress.repositories_read
            self._bar.set_postfix_str(f"{progress.accounts_done}/{progress.accounts_total} accounts", refresh=False)
            self._bar.refresh()
            return
        if not progress.finished and self._clock() - self._last >= self._every:  # the command says how it ended
            self._last = self._clock()
            print(f"{self._what}: {describe(progress)}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
