"""The watch: the latest scan against the previous one (the one closest to 24 hours earlier), and what it finds
told to the owners. ``WatchService`` reads the store one repository at a time and hands the pure comparisons
(bot/core/watch.py) their data; ``WatchNotifier`` sends one direct message per owner, each finding at most once per
period and never while its repository is snoozed, and a summary to the report channel when a repository is over its
limit.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackApiError

from .aws.repository_creation import Registry
from .config import Settings
from .core import watch as core
from .core.cost import reachable_manifests, unique_blobs
from .core.inuse import PIN_PREFIX
from .core.lifecycle import validate_policy
from .core.models import SNOOZE, RepositoryCost, ScanResult
from .core.tuning import lifecycle_status
from .errors import RegistryError
from .render import watch as render
from .scans import ScanService
from .size import SizeService
from .store import Store

logger = logging.getLogger(__name__)
PREVIOUS = timedelta(hours=24)  # the previous scan is the one closest to this long before the latest
CLOUDTRAIL_MARGIN = timedelta(hours=1)  # CloudTrail's events reach LookupEvents within minutes


class WatchService:
    def __init__(self, scans: ScanService, size: SizeService, store: Store, settings: Settings, registry: Registry,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._scans, self._size, self._store, self._settings = scans, size, store, settings
        self._registry, self._clock = registry, clock

    def previous(self, latest: ScanResult) -> tuple[ScanResult, dict[str, tuple[int, float]]] | None:
        """The previous scan (without its rows) and ARN -> (stored bytes, monthly cost) in it."""
        if latest.scan_id is None:
            return None
        return self._store.scan_sizes_closest_to(latest.generated_at - PREVIOUS, latest.scan_id)

    def watch(self, scan: ScanResult | None = None, read_steps: bool = True) -> core.WatchResult:
        """The findings of ``scan`` (default: the latest scan, scanning when there is none). With ``read_steps``,
        the config blobs of a grown repository's largest new images name its new layers' Dockerfile steps."""
        latest = scan or self._scans.latest()
        found_previous = self.previous(latest)
        previous, before = found_previous if found_previous is not None else (None, {})
        result = core.WatchResult(latest.generated_at, previous.generated_at if previous else None, latest.partial,
                                  list(latest.errors))
        for row in latest.repositories:
            found, warning = core.over_limit(row)
            if found is not None:
                result.over_limit.append(found)
            if warning is not None:
                result.warnings.append(warning)
        if previous is None:
            result.notes.append("no previous scan to compare with: only limits are checked; growth, new "
                                "repositories and ineffective policies need a second scan (the next scan or "
                                "`ecr-cost-bot scan`)")
            core.sort_findings(result)
            return result
        blind = core.Blind(latest.errors, previous.errors)
        cutoff = latest.generated_at - timedelta(days=core.STALE_DAYS)
        stale = self._store.with_stale_images(latest.scan_id, cutoff) if latest.scan_id is not None else set()
        policies: dict[str, tuple] = {}  # policy text -> (policy, problems): many repositories share one
        min_bytes = core.growth_threshold_bytes(self._settings.growth_min_gb)
        new: list[RepositoryCost] = []
        for row in latest.repositories:
            earlier = before.get(row.arn)
            if row not in blind:
                if earlier is not None and core.grew(earlier[0], row.stored_bytes, self._settings.growth_pct,
                                                     min_bytes):
                    result.growth.append(self._growth(latest, previous, row, earlier, read_steps, result))
                elif core.is_new(row, previous.generated_at):
                    new.append(row)
            if row.has_lifecycle_policy and row.arn in stale and not self._chosen_through_the_bot(row):
                text = row.lifecycle_policy or ""
                if text not in policies:
                    policies[text] = validate_policy(text)
                ineffective = self._ineffective(latest, row, *policies[text])
                if ineffective is not None:
                    result.ineffective_policies.append(ineffective)
        result.new_without_policy = self._creators(new, previous.generated_at, latest.generated_at, result)
        core.sort_findings(result)
        return result

    def _growth(self, latest: ScanResult, previous: ScanResult, row: RepositoryCost, earlier: tuple[int, float],
                read_steps: bool, result: core.WatchResult) -> core.Growth:
        images = self._store.snapshot_images(latest.scan_id, row.arn) or []
        manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
        held = self._store.snapshot_images(previous.scan_id, row.arn)
        earlier_blobs = None
        if held is not None:  # the image list of the previous scan is still kept
            earlier_blobs = set(unique_blobs(held, reachable_manifests((i.digest for i in held),
                                                                       self._store.get_manifests))[0])
        steps: dict = {}
        if read_steps:
            steps, notices = self._size.config_steps(
                row, core.configs_of_recent(images, manifests, previous.generated_at))
            result.warnings += [n for n in notices if n not in result.warnings]
        return core.growth(row, earlier, previous.generated_at, images, manifests, earlier_blobs, steps)

    def _chosen_through_the_bot(self, row: RepositoryCost) -> bool:
        """The base policy, or a policy the bot put (its keep rule is in it): what it keeps is what its owners
        chose, so it is no finding (and offering to adopt the base policy there would be absurd)."""
        text = row.lifecycle_policy or ""
        return PIN_PREFIX in text or lifecycle_status(text, self._settings.base_policy) == "base"

    def _ineffective(self, latest: ScanResult, row: RepositoryCost, policy: dict | None,
                     problems: list[str]) -> core.IneffectivePolicy | None:
        """``row`` holds stale images (the store said so); does its (valid) policy act on any image?"""
        if problems or policy is None:
            return None
        images = self._store.snapshot_images(latest.scan_id, row.arn) or []
        manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
        return core.ineffective(row, policy, images, manifests, latest.generated_at, latest.price_per_gb_month)

    def _creators(self, rows: list[RepositoryCost], start: datetime, end: datetime,
                  result: core.WatchResult) -> list[core.NewRepository]:
        """Who created each new repository: CloudTrail where it can be read, else the owner tag."""
        places: dict[tuple[str, str], dict[str, str] | None] = {}
        found = []
        for row in rows:
            place = (row.account_id, row.region)
            if place not in places:
                try:
                    places[place] = self._registry.creators(row.account_id, row.region, start - CLOUDTRAIL_MARGIN,
                                                            end + CLOUDTRAIL_MARGIN)
                except RegistryError as exc:
                    places[place] = None
                    result.warnings.append(f"{exc}: the owner tag names who created new repositories there")
            who = (places[place] or {}).get(row.repository)
            if who is not None:
                found.append(core.NewRepository(row, who, "cloudtrail"))
            elif row.owners:
                found.append(core.NewRepository(row, " ".join(row.owners), "owner tag"))
            else:
                found.append(core.NewRepository(row, None, None))
        return found


class WatchNotifier:
    """The findings to the people who can act on them: one direct message per owner (the admins for repositories
    nobody owns), each finding at most once per period and not while its repository is snoozed; a summary in the
    report channel when a repository is over its limit."""

    def __init__(self, store: Store, settings: Settings, client, owner_ids: Callable[[tuple[str, ...]], list[str]],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._store, self._settings = store, settings
        self._client, self._owner_ids, self._clock = client, owner_ids, clock

    def _snoozed(self, row: RepositoryCost) -> bool:
        snoozes = self._store.decisions(row.arn, actions=("snoozed",))
        return bool(snoozes) and self._clock() - snoozes[-1].at < SNOOZE

    def post(self, result: core.WatchResult, period: str) -> str:
        inbox: dict[str, list[tuple[str, core.Finding]]] = {}
        snoozed: dict[str, bool] = {}
        for kind, finding in render.findings(result):
            row = finding.row
            if row.arn not in snoozed:
                snoozed[row.arn] = self._snoozed(row)
            if snoozed[row.arn]:
                continue
            for user_id in (self._owner_ids(row.owners) or list(self._settings.admins)):
                inbox.setdefault(user_id, []).append((kind, finding))
        sent = told = 0
        for user_id, items in inbox.items():
            fresh = [(kind, f) for kind, f in items[:render.MAX_FINDINGS_PER_MESSAGE]
                     if self._store.claim_finding(period, core.finding_key(kind, f.row), user_id)]
            if not fresh:
                continue
            try:
                self._client.chat_postMessage(channel=user_id, **render.owner_message(
                    fresh, len(items) - min(len(items), render.MAX_FINDINGS_PER_MESSAGE),
                    unowned=not any(self._owner_ids(f.row.owners) for _, f in fresh)))
                sent += 1
                told += len(fresh)
            except SlackApiError as exc:  # not sent: the findings go out with a later run
                self._store.release_findings(period, [core.finding_key(kind, f.row) for kind, f in fresh], user_id)
                logger.warning("the watch's message to %s failed: %s", user_id, exc.response.get("error"))
        summary = ""
        channel = self._settings.report_channel
        if result.over_limit and channel and self._store.claim_finding(period, "summary", channel):
            try:
                self._client.chat_postMessage(channel=channel, **render.channel_summary(result))
                summary = "; the over-limit summary posted to the report channel"
            except SlackApiError as exc:
                self._store.release_findings(period, ["summary"], channel)
                logger.warning("the watch's summary to %s failed: %s", channel, exc.response.get("error"))
        return f"watch {period}: {result.finding_count} findings, {told} sent in {sent} direct messages{summary}"

