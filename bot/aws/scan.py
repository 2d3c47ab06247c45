"""The scan of the estate: every repository of every account and region, yielded as soon as it is read, with
bounded concurrency. Failures are ScanProblem items alongside the inventories, never raised: a broken account or
region must not hide the rest of the estate.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..core.models import RepositoryInventory, ScanProblem
from ..errors import AwsNotFound, describe
from ..progress import Progress
from .accounts import Account, Accounts
from .registry_reader import Region, RegistryReader

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 30.0  # seconds between the scan's progress lines in the log

Found = Iterator[RepositoryInventory | ScanProblem]


class ScanProgress:
    """Accounts done of total, their rate and the time left, logged every ``every`` seconds (and at the end)."""

    def __init__(self, total: int, every: float, listener: Callable[[Progress], None] | None = None):
        self._regions: dict[str, int] = {}  # account -> regions not yet listed
        self._reading: dict[str, int] = {}  # account -> repositories listed, not yet read
        self._total, self._done, self._repositories, self._listed = total, 0, 0, 0
        self._every, self._listener = every, listener
        self._started = self._last = time.monotonic()

    def entered(self, account_id: str, regions: int) -> None:
        """An account entered with its regions (0: it could not be entered, so it is done)."""
        self._regions[account_id], self._reading[account_id] = regions, 0
        self._settle(account_id)

    def listed(self, account_id: str, repositories: int) -> None:
        self._regions[account_id] -= 1
        self._reading[account_id] += repositories
        self._listed += repositories
        self._settle(account_id)

    def read(self, account_id: str) -> None:
        self._reading[account_id] -= 1
        self._repositories += 1
        self._settle(account_id)

    def _settle(self, account_id: str) -> None:
        if self._regions[account_id] == 0 and self._reading[account_id] == 0:
            self._done += 1
            del self._regions[account_id], self._reading[account_id]  # counted once; nothing kept per account
        if self._listener is not None:
            self._listener(self.snapshot())
        if time.monotonic() - self._last >= self._every:
            self.log()

    def snapshot(self, final: bool = False) -> Progress:
        return Progress(self._done, self._total, self._repositories, self._listed,
                        time.monotonic() - self._started, finished=final)

    def log(self, final: bool = False) -> None:
        if final and self._listener is not None:
            self._listener(self.snapshot(final=True))
        self._last = now = time.monotonic()
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        left = (self._total - self._done) / rate if rate else None
        eta = "" if final or left is None else f", about {left / 60:.0f} min left" if left >= 60 else \
            f", about {left:.0f} s left"
        logger.info("scan %s: %d of %d accounts done, %d repositories read in %.0f s (%.1f accounts/min, "
                    "%.1f repositories/s)%s", "finished" if final else "progress", self._done, self._total,
                    self._repositories, elapsed, rate * 60, self._repositories / elapsed, eta)


class EstateScan:
    """One scan: ECR's rate limits are per account and region, so the work is spread: repositories are read
    round-robin across (account, region). Memory follows the work in flight, not the organisation: accounts are
    entered as the work reaches them (at most one batch of workers ahead), regions are listed only while few
    repositories and regions wait, and at most twice as many repositories as workers are read at once (a slow
    consumer, pricing and storing, holds the readers back). A region's client lives as long as its repositories are
    being read; an account's session is let go once others have replaced it."""

    _pool: ThreadPoolExecutor

    def __init__(self, accounts: Accounts, reader: RegistryReader, workers: int, progress_every: float = PROGRESS_EVERY,
                 listener: Callable[[Progress], None] | None = None):
        self._accounts, self._reader, self._workers = accounts, reader, workers
        self._every, self._listener = progress_every, listener
        self._to_enter: deque[tuple[str, str]] = deque()  # (role ARN, account) not yet entered
        self._targets: deque[tuple[Account, str]] = deque()  # (account, region) not yet listed
        self._queues: dict[tuple[str, str], deque] = {}  # (account, region) -> repositories waiting to be read
        self._turns: deque[tuple[str, str]] = deque()  # the keys of non-empty queues, in turn
        self._pending: dict[Future, tuple] = {}
        self._progress = ScanProgress(0, progress_every, listener)

    def run(self, only: str | None = None) -> Found:
        """Yields each repository's inventory as soon as it is read, and each problem met (``only``: that
        account's repositories only, every region configured)."""
        own, entries, problems, _ = self._accounts.plan(account=only)
        yield from problems
        self._to_enter.extend(entries)
        if own is not None:
            self._targets.extend((own, region) for region in own.regions)
        self._progress = ScanProgress(len(entries) + (own is not None), self._every, self._listener)
        if own is not None:
            self._progress.entered(own.account_id, len(own.regions))
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ecr-scan") as pool:
            self._pool = pool
            self._fill()
            while self._pending:
                done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, target, *rest = self._pending.pop(future)
                    if kind == "account":
                        yield from self._entered(future, target, rest[0])
                    elif kind == "region":
                        yield from self._listed(future, target)
                    else:
                        yield from self._read(future, target, rest[0])
                self._fill()
        self._progress.log(final=True)

    # -- what is sent to the workers: repositories first, then regions to list, then accounts to enter --------

    def _fill(self) -> None:
        self._submit_reads()
        waiting = sum(len(q) for q in self._queues.values())
        busy = {kind: 0 for kind in ("region", "account")}
        for kind, *_ in self._pending.values():
            busy[kind] = busy.get(kind, 0) + 1
        # a listed region keeps its client (about 150 KB) until its repositories are read: at most `workers` regions
        # listed or waiting, or an organisation of one repository per account held 64 clients and more at once
        while (self._targets and busy["region"] < self._workers and waiting < 4 * self._workers
               and len(self._queues) + busy["region"] < self._workers):
            account, region = self._targets.popleft()
            target = Region(account.account_id, region, None)  # its client is made by the worker
            self._pending[self._pool.submit(self._reader.list_repositories, target, account.session)] = \
                ("region", target)
            busy["region"] += 1
        while self._to_enter and busy["account"] < self._workers and len(self._targets) < self._workers:
            arn, account_id = self._to_enter.popleft()
            self._pending[self._pool.submit(self._accounts.enter, arn)] = ("account", arn, account_id)
            busy["account"] += 1

    def _submit_reads(self) -> None:
        while self._turns and len(self._pending) < 2 * self._workers:
            key = self._turns.popleft()
            target, ref, created_at = self._queues[key].popleft()
            self._pending[self._pool.submit(self._reader.read_repository, target.client, ref, created_at)] = \
                ("repository", target, ref)
            if self._queues[key]:
                self._turns.append(key)
            else:
                del self._queues[key]

    # -- what the workers found ---------------------------------------------------------------------------

    def _entered(self, future: Future, arn: str, account_id: str) -> Found:
        account, failure = future.result()
        if account is None:
            self._progress.entered(account_id, 0)
            yield self._accounts.unentered(arn, account_id, failure)
            return
        self._progress.entered(account.account_id, len(account.regions))
        self._targets.extend((account, region) for region in account.regions)
        if account.problem:
            yield ScanProblem(account.account_id, "*", account.problem)

    def _listed(self, future: Future, target: Region) -> Found:
        error = future.exception()
        found = [] if error is not None else future.result()
        self._progress.listed(target.account_id, len(found))
        if error is not None:
            yield ScanProblem(target.account_id, target.region, f"cannot list repositories: {describe(error)}")
        elif found:
            key = (target.account_id, target.region)
            self._queues[key] = deque((target, ref, created_at) for ref, created_at in found)
            self._turns.append(key)

    def _read(self, future: Future, target: Region, ref) -> Found:
        error = future.exception()
        self._progress.read(target.account_id)
        if error is None:
            yield future.result()
        elif isinstance(error, AwsNotFound) and error.code == "RepositoryNotFoundException":
            pass  # deleted while we were scanning: it no longer costs anything
        else:
            yield ScanProblem(target.account_id, target.region,
                              f"cannot read repository {ref.name}: {describe(error)}", ref.name)
