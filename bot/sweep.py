"""The sweep service: delete images nobody has pulled for N days, in the repositories whose owners opted in
(the repository tag ``ecr-cost-expire-unpulled-days`` = N), announced to the owners first.

Each run reads every opted-in repository now (fresh pull times) and the runtimes (fresh), announces the new
candidates (recorded; a direct message to the owners when Slack is configured), and deletes only candidates
announced at least ECR_COST_SWEEP_GRACE_HOURS earlier that are still candidates after a second fresh read of
the repository and the runtimes just before deleting. A partial in-use check sweeps nothing in that repository.
Every deleted image (digest, tags, manifest, times, size) is in the decision log before BatchDeleteImage.
The candidate logic is pure: bot/core/sweep.py. The announcements live in their own table (``SweepLedger``).
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .aws.ecr import EcrCollector
from .config import Settings
from .core.cost import monthly_cost, owner_tag_value, parse_owners
from .core.inuse import pin_tag
from .core.models import PolicyDecision, RepositoryCost, RepositoryInventory, RepositoryRef, ScanResult
from .core.sweep import (
    SWEEP_TAG,
    ArchiveEconomics,
    archive_economics,
    capped,
    deletion_order,
    freed_bytes,
    parse_days,
    plan,
    whole_families,
)
from .core.tuning import archives
from .errors import AwsError, NotAnOwner, PolicyOperationError, describe
from .format import plural, size
from .gate import Actor, Change, claimed
from .store import Store, from_iso, to_iso
from .usage import InUseFinder

logger = logging.getLogger(__name__)
BOT_USER = "ecr-cost-bot"
_FREED = re.compile(r"(\d+) bytes freed")


class SweepLedger:
    """The announcements table (m016_sweep) over the store's database: (repository, digest) -> when announced."""

    def __init__(self, store: Store):
        self._store = store

    def announced(self, arn: str) -> dict[str, datetime]:
        rows = self._store.db.execute("select digest, announced_at from sweep_announcements where arn = ?", [arn])
        return {digest: from_iso(at) for digest, at in rows.fetchall()}

    def announce(self, arn: str, digests: Sequence[str], batch: str, at: datetime) -> None:
        with self._store.db.conn:
            self._store.db.conn.executemany(
                "insert or ignore into sweep_announcements (arn, digest, batch, announced_at) values (?, ?, ?, ?)",
                [(arn, d, batch, to_iso(at)) for d in digests])

    def forget(self, arn: str, digests: Sequence[str] | None = None) -> None:
        """Announcements that no longer stand (pulled again, kept, deleted; every one with ``digests`` None)."""
        with self._store.db.conn:
            if digests is None:
                self._store.db.execute("delete from sweep_announcements where arn = ?", [arn])
            else:
                self._store.db.conn.executemany("delete from sweep_announcements where arn = ? and digest = ?",
                                           [(arn, d) for d in digests])

    def forget_other_repositories(self, arns: set[str]) -> None:
        """Repositories that no longer opt in: a later opt-in announces afresh, with a full grace period."""
        for (arn,) in self._store.db.execute("select distinct arn from sweep_announcements").fetchall():
            if arn not in arns:
                self.forget(arn)

    def batch(self, batch: str) -> tuple[str | None, list[str]]:
        """(repository ARN, the digests still announced) of one announcement."""
        rows = self._store.db.execute("select arn, digest from sweep_announcements where batch = ?", [batch]).fetchall()
        return (rows[0][0] if rows else None), [d for _, d in rows]

    def settle(self, decision_id: int, images: list[dict], note: str, usd: float) -> None:
        """A sweep decision once BatchDeleteImage answered: each image's outcome, what was really freed."""
        with self._store.db.conn:
            self._store.db.execute("update decisions set images = ?, note = ?, projected_monthly_savings_usd = ? "
                                   "where id = ?", [json.dumps(images), note, usd, decision_id])


@dataclass
class RepositorySweep:
    """One repository's part of a run: the contract's `repositories[]` entry, and what owners are told."""

    row: RepositoryCost
    unpulled_days: int | None
    announced: list[str] = field(default_factory=list)  # newly announced this run
    deleted: list[str] = field(default_factory=list)
    kept_in_use: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    batch: str | None = None  # the announcement's id (the Keep these button names it)
    announced_bytes: int = 0
    announced_usd: float = 0.0
    deletes_after: datetime | None = None
    deleted_bytes: int = 0
    deleted_usd: float = 0.0
    decision_id: int | None = None
    told: list[str] = field(default_factory=list)  # Slack users messaged about the announcement

    def as_json(self) -> dict:
        row = self.row
        return {"repository": row.repository, "account_id": row.account_id, "region": row.region,
                "unpulled_days": self.unpulled_days, "announced": self.announced, "deleted": self.deleted,
                "kept_in_use": self.kept_in_use, "problems": self.problems}


@dataclass
class SweepRun:
    repositories: list[RepositorySweep]
    dry_run: bool
    at: datetime

    def as_json(self) -> dict:
        return {"repositories": [r.as_json() for r in self.repositories]}


Announcer = Callable[[RepositorySweep], list[str]]  # messages the owners; returns the Slack users told


class SweepService:
    def __init__(self, scan: Callable[[], ScanResult], collector: EcrCollector, store: Store, in_use: InUseFinder,
                 settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._scan, self._collector, self._store = scan, collector, store
        self._in_use, self._settings, self._clock = in_use, settings, clock
        self.ledger = SweepLedger(store)

    # -- the opt-in ------------------------------------------------------------------------------

    def enable(self, ref: RepositoryRef, days: int | str, actor: Actor) -> Change:
        """Sets the opt-in tag (owners and admins only), recorded; `disable` undoes it."""
        parsed, problem = parse_days(days)
        if problem:
            raise PolicyOperationError(f"{problem}; nothing was changed")
        assert parsed is not None  # no problem: a number
        days = parsed
        with self._claimed(ref):
            tags, owners, born = self._authorise(ref, actor)
            before = tags.get(SWEEP_TAG)
            if before == str(days):
                return Change(None, f"{ref.name} is already swept after {days} days unpulled; nothing was changed")
            note = f"{SWEEP_TAG}={days} (was {before if before is not None else 'unset'})"
            decision = self._record(ref, "sweep_enabled", actor, owners, born, note)
            self._change_tag(ref, decision, lambda: self._collector.tag_repository(ref, SWEEP_TAG, str(days)),
                             lambda now: now.get(SWEEP_TAG) == str(days))
            if before is not None:
                self.ledger.forget(ref.arn)  # another N: candidates are announced afresh
            return Change(decision)

    def disable(self, ref: RepositoryRef, actor: Actor) -> Change:
        """Removes the opt-in tag (owners and admins only): nothing more is announced or deleted there."""
        with self._claimed(ref):
            tags, owners, born = self._authorise(ref, actor)
            if SWEEP_TAG not in tags:
                self.ledger.forget(ref.arn)
                return Change(None, f"{ref.name} is not swept ({SWEEP_TAG} is not set); nothing was changed")
            decision = self._record(ref, "sweep_disabled", actor, owners, born,
                                    f"{SWEEP_TAG} removed (was {tags[SWEEP_TAG]})")
            self._change_tag(ref, decision, lambda: self._collector.untag_repository(ref, SWEEP_TAG),
                             lambda now: SWEEP_TAG not in now)
            self.ledger.forget(ref.arn)
            return Change(decision)

    def keep(self, batch: str, actor: Actor, find: Callable[[str], RepositoryRef | None]) -> Change:
        """Keep these: the announced images of ``batch`` get the bot's pin tag (never swept), recorded."""
        arn, digests = self.ledger.batch(batch)
        ref = find(arn) if arn else None
        if ref is None or not digests:
            return Change(None, "These images are no longer announced for deletion (kept, pulled again, or "
                                "deleted); nothing was changed.")
        with self._claimed(ref):
            _, owners, born = self._authorise(ref, actor)
            pinned, gone = [], []
            for digest in digests:
                try:
                    self._collector.add_tag(ref, digest, pin_tag(digest))
                    pinned.append(digest)
                except LookupError:
                    gone.append(digest)
                except AwsError as exc:
                    self.ledger.forget(ref.arn, pinned)
                    raise PolicyOperationError(f"cannot pin the images of {ref.name} ({describe(exc)}); "
                                               f"{len(pinned)} of {len(digests)} pinned, "
                                               "the rest stay announced") from exc
            self.ledger.forget(ref.arn, digests)
            decision = self._record(ref, "sweep_kept", actor, owners, born,
                                    f"pinned {plural(len(pinned), 'image')} announced for the sweep: "
                                    f"{', '.join(pinned)}"
                                    + (f"; {len(gone)} already gone" if gone else ""))
            return Change(decision)

    @staticmethod
    def archive_economics(scan: ScanResult | None) -> ArchiveEconomics | None:
        """Whether archiving would save anything in the estate the scan saw (None: no scan yet)."""
        return None if scan is None else archive_economics(sum(r.stored_bytes for r in scan.repositories))

    def archive_note(self, scan: ScanResult | None, policy: dict | None = None) -> str | None:
        """The estate's archive economics (Adjust, `policy preview`): whether archiving would save anything; with
        ``policy``, whether it archives (a ``transition`` rule) where that saves nothing."""
        found = self.archive_economics(scan)
        if found is None:
            return None
        if policy is not None and archives(policy) and not found.saves:
            return (f"This policy archives images (transition), which saves nothing here: you may still choose it. "
                    f"{found.text}")
        return found.text

    # -- a run -----------------------------------------------------------------------------------

    def run(self, dry_run: bool = False, announce: Announcer | None = None, user_id: str = BOT_USER,
            source: str = "schedule") -> SweepRun:
        """Every opted-in repository of a fresh scan: announce new candidates, delete those past their grace."""
        scan = self._scan()
        now = self._clock()
        self._in_use.references(fresh=True)
        results, opted = [], set()
        for row in scan.repositories:
            if SWEEP_TAG not in row.tags:
                continue
            opted.add(row.arn)
            days, problem = parse_days(row.tags[SWEEP_TAG])
            found = RepositorySweep(row, days)
            results.append(found)
            if problem:
                found.problems.append(f"{problem}: nothing swept (fix the tag, or `ecr-cost-bot sweep enable`)")
                continue
            try:
                with self._claimed(RepositoryRef(row.account_id, row.region, row.repository, row.arn)):
                    self._repository(found, now, dry_run, user_id, source)
            except PolicyOperationError as exc:
                found.problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - one repository never stops the others
                logger.exception("sweeping %s failed", row.arn)
                found.problems.append(f"sweeping {row.repository} failed: {describe(exc)}; nothing more was "
                                      f"deleted there")
            if found.announced and not dry_run and announce is not None:
                try:
                    found.told = announce(found)
                except Exception as exc:  # noqa: BLE001 - recorded: the grace period still runs
                    logger.exception("announcing the sweep of %s failed", row.arn)
                    found.problems.append(f"the owners could not be messaged: {exc}")
        if not dry_run and not scan.partial:
            self.ledger.forget_other_repositories(opted)
        return SweepRun(results, dry_run, now)

    def _repository(self, found: RepositorySweep, now: datetime, dry_run: bool, user_id: str, source: str) -> None:
        row = found.row
        ref = RepositoryRef(row.account_id, row.region, row.repository, row.arn)
        inventory, candidates = self._candidates(ref, found, now, fresh=False)
        if candidates is None:
            return
        announced = self.ledger.announced(ref.arn)
        if not dry_run:  # pulled again, in use, pinned or gone since: announced afresh if they come back
            self.ledger.forget(ref.arn, [d for d in announced if d not in candidates.digests])
        new = [d for d in candidates.digests if d not in announced]
        grace = timedelta(hours=self._settings.sweep_grace_hours)
        due = [d for d in candidates.digests if d in announced and now - announced[d] >= grace]
        if new:
            found.announced = new
            found.announced_bytes = freed_bytes(inventory.images, new, inventory.manifests)
            found.announced_usd = monthly_cost(found.announced_bytes, self._settings.price_per_gb_month)
            found.deletes_after = now + grace
            if not dry_run:
                found.batch = uuid.uuid4().hex[:16]
                self.ledger.announce(ref.arn, new, found.batch, now)
        if not due:
            return
        if dry_run:
            chosen = capped([i for i in candidates.candidates if i.digest in due], inventory.manifests,
                            self._settings.sweep_max_per_run)
            found.deleted = [i.digest for i in chosen]
            return
        # just before deleting: the repository and the runtimes read again
        inventory, again = self._candidates(ref, found, self._clock(), fresh=True)
        if again is None:
            return
        still = whole_families(set(due) & set(again.digests), inventory.images, inventory.manifests)
        chosen = capped([i for i in again.candidates if i.digest in still], inventory.manifests,
                        self._settings.sweep_max_per_run)
        if chosen:
            self._delete(found, ref, inventory, [i.digest for i in chosen], user_id, source)

    def _candidates(self, ref: RepositoryRef, found: RepositorySweep, now: datetime, fresh: bool):
        """(the repository read now, its sweep plan), or (…, None) when nothing may be swept there."""
        try:
            inventory = self._collector.refresh(ref)
        except AwsError as exc:
            found.problems.append(f"cannot read {ref.name}: {describe(exc)}; nothing swept")
            return None, None
        days, problem = parse_days(inventory.tags.get(SWEEP_TAG))
        if problem:  # the opt-in was removed or changed meanwhile
            found.problems.append(f"{ref.name} no longer opts in ({problem}); nothing swept")
            return inventory, None
        assert days is not None  # no problem: a number
        found.unpulled_days = days
        in_use = self._in_use.repository(ref, inventory.images, inventory.manifests, fresh=fresh)
        used = in_use.of(ref.account_id, ref.region, ref.name)
        candidates = plan(inventory.images, inventory.manifests, days, now, used)
        found.kept_in_use = sorted(candidates.kept_in_use)
        if in_use.partial:
            found.problems += [f"in-use check partial, nothing swept: {p.source} in {p.account_id} {p.region}: "
                               f"{p.message}" for p in in_use.problems]
            return inventory, None
        return inventory, candidates

    def _delete(self, found: RepositorySweep, ref: RepositoryRef, inventory: RepositoryInventory,
                digests: list[str], user_id: str, source: str) -> None:
        """Recorded first (digest, tags, manifest, times, size of each image), then BatchDeleteImage; failures per
        image are reported and marked in the record."""
        try:
            documents, failures = self._collector.manifest_documents(ref, digests)
        except AwsError as exc:
            found.problems.append(f"cannot read the manifests of {ref.name} ({describe(exc)}); nothing deleted")
            return
        found.problems += [f"{f}: not deleted (its manifest could not be recorded)" for f in failures]
        digests = sorted(whole_families({d for d in digests if d in documents}, inventory.images, inventory.manifests))
        if not digests:
            return
        by_digest = {i.digest: i for i in inventory.images}
        records = [{"digest": d, "tags": list(by_digest[d].tags), "media_type": documents[d]["media_type"],
                    "manifest": documents[d]["manifest"], "pushed_at": to_iso(by_digest[d].pushed_at),
                    "last_pulled_at": to_iso(by_digest[d].last_pulled_at), "size_bytes": by_digest[d].listed_bytes}
                   for d in digests]
        freed = freed_bytes(inventory.images, digests, inventory.manifests)
        usd = monthly_cost(freed, self._settings.price_per_gb_month)
        decision = self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, "sweep", user_id, source, self._clock(), None, None,
            usd, owners_checked=found.row.owners, repository_created_at=inventory.created_at,
            note=f"{plural(len(digests), 'image')} nobody pulled for {found.unpulled_days} days, "
                 f"to delete: {size(freed)} freed",
            images=json.dumps(records)))
        failed: dict[str, str] = {}
        for group in deletion_order([by_digest[d] for d in digests], inventory.manifests):
            if not group:
                continue
            try:
                failed |= self._collector.delete_images(ref, group)
            except AwsError as exc:
                try:  # the answer may be lost while the deletion was not: what is still there failed
                    there = self._collector.image_digests(ref)
                except AwsError:
                    there = set(group)
                failed |= {d: describe(exc) for d in group if d in there}
        for record in records:
            record["deleted"] = record["digest"] not in failed
            if record["digest"] in failed:
                record["failure"] = failed[record["digest"]]
        found.problems += [f"{d}: not deleted: {why}" for d, why in sorted(failed.items())]
        found.deleted = [d for d in digests if d not in failed]
        self.ledger.forget(ref.arn, found.deleted)
        found.deleted_bytes = freed_bytes(inventory.images, found.deleted, inventory.manifests)
        found.deleted_usd = monthly_cost(found.deleted_bytes, self._settings.price_per_gb_month)
        found.decision_id = decision.id
        assert decision.id is not None  # recorded
        self.ledger.settle(decision.id, records,
                           f"{len(found.deleted)} of {plural(len(digests), 'image')} nobody pulled for "
                           f"{found.unpulled_days} days deleted, {found.deleted_bytes} bytes freed",
                           found.deleted_usd)

    # -- owners' rules (as for adoption) ---------------------------------------------------------------

    def _authorise(self, ref: RepositoryRef, actor: Actor) -> tuple[dict[str, str], tuple[str, ...], datetime | None]:
        try:
            born = self._collector.created_at(ref)
            tags = self._collector.read_tags(ref)
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                raise PolicyOperationError(f"{ref.name} no longer exists in {ref.account_id} {ref.region}; nothing "
                                           f"was changed") from None
            raise PolicyOperationError(f"cannot read the owner tag of {ref.name} ({describe(exc)}), so nobody "
                                       f"can be checked as its owner; nothing was changed") from None
        owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
        if not actor.may_change(owners):
            raise NotAnOwner(ref, owners)
        return tags, owners, born

    def _change_tag(self, ref: RepositoryRef, decision: PolicyDecision, change: Callable[[], None],
                    happened: Callable[[dict[str, str]], bool]) -> None:
        """The decision is recorded first; withdrawn only when AWS surely did not change the tag."""
        try:
            change()
            return
        except AwsError as exc:
            error = exc
        try:
            done = happened(self._collector.read_tags(ref))
        except AwsError:
            done = True
        if not done:
            assert decision.id is not None  # recorded
            self._store.withdraw_decision(decision.id)
            raise PolicyOperationError(f"AWS refused to tag {ref.name}: {describe(error)}; nothing was changed")
        raise PolicyOperationError(f"tagging {ref.name} failed ({describe(error)}), yet the tag is in AWS: it "
                                   f"was recorded (decision #{decision.id})")

    def _record(self, ref: RepositoryRef, action: str, actor: Actor, owners, born, note: str) -> PolicyDecision:
        return self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, action, actor.user_id, actor.source, self._clock(),
            None, None, None, owners_checked=owners, repository_created_at=born, note=note))

    def _claimed(self, ref: RepositoryRef):
        """One change per repository at a time: the same claim policy changes take."""
        return claimed(self._store, ref)


def swept_since(store: Store, since: datetime) -> dict[str, tuple[str, int, int, float]]:
    """ARN -> (repository name, images, bytes, USD/month) the sweep deleted since ``since``: the weekly report's
    line."""
    totals: dict[str, tuple[str, int, int, float]] = {}
    for decision in store.decisions(actions=("sweep",)):
        if decision.at < since or not decision.images:
            continue
        deleted = sum(1 for r in json.loads(decision.images) if r.get("deleted", True))
        freed = _FREED.search(decision.note or "")
        _, count, total, usd = totals.get(decision.arn, ("", 0, 0, 0.0))
        totals[decision.arn] = (decision.repository, count + deleted, total + (int(freed[1]) if freed else 0),
                                usd + (decision.projected_monthly_savings_usd or 0.0))
    return totals
