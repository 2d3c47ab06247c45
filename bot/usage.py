"""The in-use set: what the runtimes reference (bot/aws/runtimes.py, bot/kube.py), plus recent pulls, resolved
against the inventory (core/inuse.py). Shared by previews, adoptions and the guard.

Runtime references are cached for a few minutes (one collection reads every cluster and function of the
estate); tags are always resolved against the images given, so a tag moved since still resolves to now.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from .aws.ecr import EcrCollector
from .aws.runtimes import RuntimeCollector
from .config import Settings
from .core.cost import reachable_manifests
from .core.inuse import InUseSet, Reference, SourceProblem, recent_pulls, resolve
from .core.models import Image, Manifest, RepositoryRef, ScanResult
from .core.pullers import blind_spots, grants
from .errors import AwsError, EstateUnreadable, describe
from .store import Store

REFERENCES_MAX_AGE = timedelta(minutes=5)


class InUseFinder:
    def __init__(self, runtimes: RuntimeCollector, store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 collector: EcrCollector | None = None):
        self._runtimes = runtimes
        self._collector = collector
        self._store = store
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[datetime, list[Reference], list[SourceProblem]] | None = None
        self._by_repository: dict[tuple[str, str, str], list[Reference]] = {}  # the cached references, indexed

    def references(self, fresh: bool = False) -> tuple[list[Reference], list[SourceProblem], datetime]:
        """Every runtime's image references (at most REFERENCES_MAX_AGE old unless ``fresh``): one collection
        at a time."""
        with self._lock:
            cached = self._cached
            if fresh or cached is None or self._clock() - cached[0] > REFERENCES_MAX_AGE:
                try:
                    references, problems = self._runtimes.collect()
                except EstateUnreadable as exc:  # no account readable: nothing is known to be unused
                    references, problems = [], [SourceProblem("aws", "*", "*", str(exc))]
                cached = self._cached = (self._clock(), references, problems)
                self._by_repository = {}
                for reference in references:
                    image = reference.image
                    self._by_repository.setdefault((image.account_id, image.region, image.repository),
                                                   []).append(reference)
        return cached[1], cached[2], cached[0]

    def estate(self, scan: ScanResult, fresh: bool = False) -> InUseSet:
        """The in-use set of every repository of ``scan`` (its stored image lists)."""
        references, problems, at = self.references(fresh)
        inventories = {}
        for row in scan.repositories:
            images = self._store.snapshot_images(scan.scan_id, row.arn) if scan.scan_id is not None else None
            inventories[(row.account_id, row.region, row.repository)] = images or []
        manifests = reachable_manifests({i.digest for images in inventories.values() for i in images},
                                        self._store.get_manifests)
        return self._resolve(references, problems, at, inventories, manifests)

    def repository(self, ref: RepositoryRef, images: Sequence[Image], manifests: Mapping[str, Manifest],
                   fresh: bool = False, who_may_pull: bool = False) -> InUseSet:
        """The in-use set of one repository, from images just read; with ``who_may_pull`` (every write, every
        preview a person asks for), its repository and registry policies read too (pull_problems)."""
        _, problems, at = self.references(fresh)
        key = (ref.account_id, ref.region, ref.name)
        with self._lock:
            mine = list(self._by_repository.get(key, ()))
        blind = self.pull_problems(ref) if who_may_pull else []
        return self._resolve(mine, [*problems, *blind], at, {key: list(images)}, manifests)

    def pull_problems(self, ref: RepositoryRef) -> list[SourceProblem]:
        """Who may pull ``ref`` (its repository policy and its registry's) that the bot cannot read the runtimes
        of: each makes the repository's in-use check partial. Read each time (two calls): a grant made a minute
        ago must stop the next adoption."""
        if self._collector is None:
            return []
        problems: list[SourceProblem] = []

        def named(message: str) -> SourceProblem:
            return SourceProblem("who-may-pull", ref.account_id, ref.region, message)

        found = None
        try:
            found = grants(self._collector.repository_policy(ref), f"the repository policy of {ref.name}")
            found |= grants(self._collector.registry_policy(ref), f"the registry policy of {ref.account_id} "
                                                                   f"{ref.region}", ref.arn)
        except AwsError as exc:
            problems.append(named(f"cannot read who may pull {ref.name} (ecr:GetRepositoryPolicy, "
                                  f"ecr:GetRegistryPolicy): {describe(exc)}"))
        if found is not None:
            self.references()  # the accounts whose runtimes were read go with the references
            readable = self._runtimes.readable_accounts
            organisation = self._collector.organisation_id() if found.organisations else None
            problems += [named(p) for p in blind_spots(found, readable, organisation,
                                                       self._collector.organisation_accounts)]
        return problems

    def _resolve(self, references, problems, at, inventories, manifests) -> InUseSet:
        now = self._clock()
        pulls = [r for key, images in inventories.items()
                 for r in recent_pulls(key, images, now, self._settings.recent_pull_days)]
        found = resolve([*references, *pulls], inventories, manifests)
        found.problems = list(problems)
        found.collected_at = at
        return found
