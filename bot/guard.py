"""In-use images and the guard: where each image runs, and every repository's current policy checked against the
images in use (the bot's own adoptions have their pins refreshed through ``PolicyChanges``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .adoption import PolicyChanges
from .core.cost import reachable_manifests
from .core.inuse import RISKY_ACTIONS, InUseSet, Usage, after_plan, has_pin_rule, is_pin
from .core.lifecycle import evaluate, same_document, validate_policy
from .core.models import RepositoryCost
from .errors import PolicyOperationError
from .lookups import Lookups
from .scans import ScanService, ref_of
from .store import Store
from .usage import InUseFinder


@dataclass(frozen=True)
class InUseImage:
    row: RepositoryCost
    digest: str
    tags: tuple[str, ...]
    used_by: tuple[Usage, ...]


@dataclass(frozen=True)
class GuardItem:
    row: RepositoryCost
    digest: str
    used_by: tuple[Usage, ...]
    rule_priority: int | None = None
    action: str | None = None  # at risk: expire, or transition (to the archive: unpullable until restored)


@dataclass
class GuardResult:
    at_risk: list[GuardItem] = field(default_factory=list)  # in use, and the current policy would expire it
    protected: list[GuardItem] = field(default_factory=list)  # in use, kept by a pin
    released: list[GuardItem] = field(default_factory=list)  # no longer used: its pin removed
    partial: bool = False
    errors: list[str] = field(default_factory=list)


class GuardService:
    def __init__(self, scans: ScanService, lookups: Lookups, changes: PolicyChanges, in_use: InUseFinder,
                 store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._scans = scans
        self._lookups = lookups
        self._changes = changes
        self._in_use = in_use
        self._store = store
        self._clock = clock

    def in_use_images(self, query: str | None = None, fresh: bool = False) -> tuple[list[InUseImage], InUseSet]:
        """Every in-use image (of one repository when ``query`` names it) and where it runs (``fresh``: the
        runtimes read now, not a few minutes ago)."""
        scan = self._scans.latest()
        assert scan.scan_id is not None  # a stored scan
        rows = [self._lookups.find(query, scan)[1]] if query else scan.repositories
        found = self._in_use.estate(scan, fresh=fresh)
        items = []
        for row in rows:
            used = found.of(row.account_id, row.region, row.repository)
            tags = {i.digest: i.tags for i in (self._store.snapshot_images(scan.scan_id, row.arn) or [])}
            items += [InUseImage(row, digest, tags.get(digest, ()), tuple(usages))
                      for digest, usages in sorted(used.items())]
        return items, found

    def guard(self) -> GuardResult:
        """Every repository's current policy (adopted through the bot or not) against its images and the in-use
        set, on a fresh scan. Where the bot adopted the policy, its protection is refreshed: new in-use images
        pinned, pins of images no longer used released where the policy would expire them anyway."""
        scan = self._scans.scan()
        assert scan.scan_id is not None  # a stored scan
        found = self._in_use.estate(scan, fresh=True)
        result = GuardResult(partial=found.partial or scan.partial,
                             errors=[f"{p.source} in {p.account_id} {p.region}: {p.message}" for p in found.problems]
                             + [f"{e.account_id} {e.region}: {e.message}" for e in scan.errors])
        now = self._clock()
        for row in scan.repositories:
            used = found.of(row.account_id, row.region, row.repository)
            images = self._store.snapshot_images(scan.scan_id, row.arn) or []
            if row.lifecycle_policy is None or not (used or any(is_pin(t) for i in images for t in i.tags)):
                continue
            policy, problems = validate_policy(row.lifecycle_policy)
            if problems:
                result.errors.append(f"{row.repository}: its lifecycle policy is not one ECR accepts: {problems[0]}")
                continue
            assert policy is not None  # no problems: a policy
            manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
            last = self._changes.last_put(row.arn)
            if has_pin_rule(policy) and last is not None and same_document(last.policy_after, row.lifecycle_policy):
                # a partial check releases nothing: an image running where we cannot see may need its pin (an
                # account that may pull this repository whose runtimes cannot be read is such a place)
                blind = [] if found.partial else self._in_use.pull_problems(ref_of(row))
                if blind:
                    result.partial = True
                    result.errors += [f"{row.repository}: {p.message}" for p in blind]
                try:
                    plan, failed = self._changes.refresh_protection(ref_of(row), images, used, policy, manifests,
                                                                   release=not (found.partial or blind))
                except PolicyOperationError as exc:
                    result.errors.append(str(exc))
                else:
                    images = after_plan(images, plan)
                    result.released += [GuardItem(row, d, ()) for d in plan.release]
                    result.errors += failed
            decisions = evaluate(images, policy, now, manifests)
            pinned = {i.digest for i in images if any(is_pin(t) for t in i.tags)}
            for digest, usages in sorted(used.items()):
                decision = decisions.get(digest)
                if decision is not None and decision.action in RISKY_ACTIONS:
                    result.at_risk.append(GuardItem(row, digest, tuple(usages), decision.rule_priority,
                                                    decision.action))
                elif digest in pinned:
                    result.protected.append(GuardItem(row, digest, tuple(usages)))
        return result
