"""Scheduled work over the application layer: the weekly report (claim the period, scan, post with the
chart, nudge owners).

Exactly one report per period, whatever restarts or extra processes: the period is claimed in the store
before anything is posted, and the claim is kept alive (a heartbeat) while its run is, so a long scan never
loses it to another replica. Slack's own "no" (an ``ok: false`` answer) means nothing was posted: the claim is
given back with a hint, so the next run or ``report --post`` posts it. Only a request whose answer was lost is
"maybe posted"; the next run then looks for the report's message metadata in the channel's history (with
``channels:history``) before posting again.
"""
from __future__ import annotations

import logging
import socket
import time
import urllib.error
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from slack_sdk.errors import SlackApiError

from .application import Application
from .config import Settings
from .core.models import ScanResult
from .core.report import WeeklyReport
from .errors import SLACK_FIX_HINTS, describe
from .format import iso, plural
from .heartbeat import heartbeat
from .render import blocks
from .render.report import report_message
from .store import CLAIM_LEASE, HEARTBEAT_SECONDS, PROCESS, Store

logger = logging.getLogger(__name__)
REPORT_EVENT = "ecr_cost_report"  # the message metadata that marks a posted report and its period
# errors with which Slack says it did not post and that pass by themselves: retried within the run
RETRYABLE_POST_ERRORS = {"ratelimited", "service_unavailable", "request_timeout"}


def period_start(settings: Settings, now: datetime, schedule: str | None = None) -> datetime:
    """The schedule's (default: the weekly report's) last fire time at or before ``now``: the period a run
    belongs to."""
    trigger = CronTrigger.from_crontab(schedule or settings.schedule, timezone=settings.timezone)
    now = now.astimezone(ZoneInfo(settings.timezone))
    for window in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=8),
                   timedelta(days=32), timedelta(days=370), timedelta(days=5 * 366)):
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is not None and fire <= now:
            while (following := trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))) and following <= now:
                fire = following
            return fire
    return now  # a schedule that never fired in five years: the period starts now


def next_fire(settings: Settings, now: datetime, schedule: str | None = None) -> datetime:
    """When the schedule (default: the weekly report's) fires next after ``now``, in ECR_COST_TIMEZONE."""
    trigger = CronTrigger.from_crontab(schedule or settings.schedule, timezone=settings.timezone)
    return trigger.get_next_fire_time(None, now.astimezone(ZoneInfo(settings.timezone)))


def _not_sent(exc: BaseException) -> bool:
    """The request never left this machine (refused, or the host unknown): nothing can have been posted."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class ReportJob:
    def __init__(self, application: Application, store: Store, settings: Settings, client,
                 owner_ids: Callable[[tuple[str, ...]], list[str]],
                 scan_now: Callable[[], ScanResult] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep, heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self._app, self._store, self._settings = application, store, settings
        self._client, self._owner_ids = client, owner_ids
        self._scan_now = scan_now or application.scan
        self._clock, self._sleep = clock, sleep
        self._heartbeat_seconds = heartbeat_seconds
        self._who = PROCESS

    def current_period(self) -> str:
        return period_start(self._settings, self._clock()).isoformat()

    def catch_up(self) -> str:
        """At start-up: the current period's report, unless it was posted or someone alive is on it (a claim whose
        holder died is taken over, a post whose answer was lost is checked)."""
        run = self._store.period_run(self.current_period())
        if run is not None and run["status"] == "posted":
            return "this period's report was already handled"
        if run is None and not self._store.has_reported():  # a first start is no missed run: nothing to catch up
            return (f"no report was ever posted from this database: the first one is due "
                    f"{iso(next_fire(self._settings, self._clock()))} (ECR_COST_SCHEDULE); "
                    f"`ecr-cost-bot report --post` posts one now")
        return self.run()

    def run(self) -> str:
        period = self.current_period()
        how = self._store.claim_period(period, self._who, lease=CLAIM_LEASE)
        if how is None:
            return f"the report for the period of {period} was already claimed"
        with heartbeat(lambda: self._store.heartbeat_period(period, self._who), self._heartbeat_seconds,
                       "report-claim"):
            return self._run(period, how)

    def _run(self, period: str, how: str) -> str:
        if how != "new":  # an earlier run may have posted before it died or lost the answer
            found = self._posted_ts(period)
            if isinstance(found, str):
                self._store.finish_period(period, self._who, "posted", message_ts=found)
                return f"the report for the period of {period} was already posted (ts {found}, found in the channel)"
            if found is None and how == "maybe posted":
                self._store.finish_period(period, self._who, "maybe_posted", error="cannot check the channel's history")
                return (f"the report for the period of {period} may have been posted already and the channel's "
                        f"history cannot be read to check: not posted again (grant channels:history to let the "
                        f"bot check)")
        try:
            scan = self._app.recent_scan() or self._scan_now()
            report = self._app.weekly_report(scan, datetime.fromisoformat(period))
        except Exception as exc:  # noqa: BLE001 - nothing was posted: the claim is given back
            logger.exception("building the weekly report for %s failed", period)
            self._store.release_period(period, self._who)
            return (f"the report for the period of {period} failed before posting (a later run may retry): "
                    f"{describe(exc)}")
        if not self._store.holds_period(period, self._who):  # stalled so long that another run took over
            return f"the report for the period of {period} was taken over by another run while this one stalled"
        try:
            ts = self._post(report, period)
        except SlackApiError as exc:  # Slack answered "no": nothing was posted
            error = exc.response.get("error") if exc.response is not None else "unknown"
            hint = SLACK_FIX_HINTS.get(error, "see Slack's error reference for chat.postMessage")
            logger.error("Slack refused the weekly report for %s (%s): %s", period, error, hint)
            self._store.release_period(period, self._who)
            return f"the report for the period of {period} was not posted: Slack said {error}; {hint}"
        except Exception as exc:  # noqa: BLE001 - the request may have reached Slack
            logger.exception("posting the weekly report for %s failed", period)
            if _not_sent(exc):
                self._store.release_period(period, self._who)
                return f"the report for the period of {period} was not posted (Slack unreachable): {exc}"
            self._store.finish_period(period, self._who, "maybe_posted", error=str(exc)[:2000])
            return f"the report for the period of {period} may not have been posted (answer lost): {exc}"
        self._store.finish_period(period, self._who, "posted", message_ts=ts)
        self._upload_chart(report, ts)
        sent = self._nudge(scan, period)
        return f"report for the period of {period} posted (ts {ts}); {sent} owner messages sent"

    def _posted_ts(self, period: str) -> str | None | bool:
        """The ts of this period's report found in the channel (by its metadata); False when surely absent;
        None when the history cannot be read (no channels:history)."""
        oldest = datetime.fromisoformat(period).timestamp() - 3600
        try:
            for page in self._client.conversations_history(channel=self._settings.report_channel,
                                                           oldest=f"{oldest:.6f}", include_all_metadata=True,
                                                           limit=200):
                for message in page.get("messages", []):
                    metadata = message.get("metadata") or {}
                    if metadata.get("event_type") == REPORT_EVENT and \
                            (metadata.get("event_payload") or {}).get("period") == period:
                        return message["ts"]
        except SlackApiError as exc:
            logger.warning("cannot read the report channel's history to find an earlier post (%s)",
                           exc.response.get("error") if exc.response is not None else exc)
            return None
        return False

    def _post(self, report: WeeklyReport, period: str) -> str:
        """chat.postMessage with backoff; slack_sdk's handlers already retry rate limits and dropped connections."""
        message = report_message(report)
        metadata = {"event_type": REPORT_EVENT, "event_payload": {"period": period}}
        for attempt in range(4):
            try:
                return self._client.chat_postMessage(channel=self._settings.report_channel, metadata=metadata,
                                                     **message)["ts"]
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error not in RETRYABLE_POST_ERRORS or attempt == 3:
                    raise
                logger.warning("posting the report failed (%s); retrying", error)
                self._sleep(2 ** attempt)
        raise AssertionError("unreachable")

    def _upload_chart(self, report: WeeklyReport, ts: str) -> None:
        """Into the report's thread; a failure is logged and never blocks the report."""
        try:
            from .render.chart import chart_png

            self._client.files_upload_v2(channel=self._settings.report_channel, thread_ts=ts,
                                         content=chart_png(report), filename="ecr-cost-report.png",
                                         title="ECR cost: top repositories and total trend")
        except Exception:  # noqa: BLE001 - the report is already posted
            logger.exception("uploading the report chart failed; the report stands without it")

    def _nudge(self, scan: ScanResult, period: str) -> int:
        """A DM to the owners of the costliest repositories without a policy: once per repo, owner, period."""
        sent = 0
        for row in self._app.nudge_candidates(scan):
            for user_id in self._owner_ids(row.owners):
                if not self._store.claim_nudge(period, row.arn, user_id):
                    continue
                message = blocks.repository_detail(self._app.view(scan, row))
                intro = blocks.section(f"Hi {blocks.mention(user_id)}: *{blocks.escape(row.repository)}* is among "
                                       f"the costliest ECR repositories and has no lifecycle policy.")
                try:
                    self._client.chat_postMessage(channel=user_id, text=message["text"],
                                                  blocks=[intro, *message["blocks"]][:blocks.MAX_BLOCKS])
                    sent += 1
                except SlackApiError:
                    logger.exception("direct message to %s about %s failed", user_id, row.arn)
        return sent


class OncePerPeriod:
    """Runs a daily (or any cron) job's work exactly once per period across processes and restarts: the period
    is claimed in the store, the claim kept alive while the work runs, given back when the work fails (a later
    run retries), and finished when it succeeds. The guard, and every job like it, is built on this."""

    def __init__(self, name: str, store: Store, settings: Settings, schedule_setting: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self.name, self._store, self._settings = name, store, settings
        self._schedule_setting, self._clock, self._heartbeat_seconds = schedule_setting, clock, heartbeat_seconds
        self._who = PROCESS

    def current_period(self) -> str:
        schedule = getattr(self._settings, self._schedule_setting)
        return f"{self.name}:" + period_start(self._settings, self._clock(), schedule).isoformat()

    def run(self, work: Callable[[str], str]) -> str:
        """``work(period)`` returns the run's one-line outcome; an exception gives the period back."""
        period = self.current_period()
        if self._store.claim_period(period, self._who, lease=CLAIM_LEASE) is None:
            return f"the {self.name} for {period} was already run"
        with heartbeat(lambda: self._store.heartbeat_period(period, self._who), self._heartbeat_seconds,
                       f"{self.name}-claim"):
            try:
                outcome = work(period)
            except Exception as exc:  # noqa: BLE001 - the period is given back: a later run may retry
                logger.exception("the %s for %s failed", self.name, period)
                self._store.release_period(period, self._who)
                return f"the {self.name} for {period} failed: {describe(exc)}"
            self._store.finish_period(period, self._who, "posted")
        return outcome


class GuardJob:
    """The daily guard: exactly once per period (ECR_COST_GUARD_SCHEDULE), like the report. Owners of in-use
    images at risk under a policy the bot did not adopt get a direct message with a Protect button."""

    def __init__(self, application: Application, store: Store, settings: Settings, client,
                 owner_ids: Callable[[tuple[str, ...]], list[str]],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self._app, self._store, self._settings = application, store, settings
        self._client, self._owner_ids, self._clock = client, owner_ids, clock
        self._once = OncePerPeriod("guard", store, settings, "guard_schedule", clock, heartbeat_seconds)

    def current_period(self) -> str:
        return self._once.current_period()

    def run(self) -> str:
        return self._once.run(self._run)

    def _run(self, period: str) -> str:
        result = self._app.guard()
        sent = self._warn_owners(result, period)
        return (f"guard {period}: {len(result.at_risk)} in-use images at risk, {len(result.protected)} protected, "
                f"{len(result.released)} released{' (PARTIAL)' if result.partial else ''}; {sent} owner messages")

    def _warn_owners(self, result, period: str) -> int:
        by_repository: dict[str, list] = {}
        for item in result.at_risk:
            by_repository.setdefault(item.row.arn, []).append(item)
        sent = 0
        day = "guard-dm:" + self._clock().date().isoformat()  # at most one message a day, however often it runs
        for items in by_repository.values():
            row = items[0].row
            for user_id in self._owner_ids(row.owners):
                if not self._store.claim_nudge(day, row.arn, user_id):
                    continue
                try:
                    self._client.chat_postMessage(channel=user_id, **blocks.guard_warning(row, items))
                    sent += 1
                except SlackApiError:
                    logger.exception("direct message to %s about %s failed", user_id, row.arn)
        return sent


class WatchJob:
    """The daily watch: exactly once per period (ECR_COST_WATCH_SCHEDULE), like the report: a fresh scan (one at a
    time across processes: a run that finds one under way waits for it), the comparison with the previous scan, the
    findings to their owners."""

    def __init__(self, watch, notifier, scan_now: Callable[[], ScanResult], store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self._watch, self._notifier, self._scan_now = watch, notifier, scan_now
        self._once = OncePerPeriod("watch", store, settings, "watch_schedule", clock, heartbeat_seconds)

    def current_period(self) -> str:
        return self._once.current_period()

    def run(self) -> str:
        return self._once.run(self._run)

    def _run(self, period: str) -> str:
        return self._notifier.post(self._watch.watch(self._scan_now()), period)


def sweep_announcer(client, owner_ids: Callable[[tuple[str, ...]], list[str]]):
    """The sweep's announcement to a repository's owners: a direct message each, with Keep these / Stop sweeping.
    Returns the Slack users told (nobody when the owner tag names no one Slack knows)."""
    def announce(found) -> list[str]:
        told = []
        for user_id in owner_ids(found.row.owners):
            try:
                client.chat_postMessage(channel=user_id, **blocks.sweep_announcement(found))
                told.append(user_id)
            except SlackApiError:
                logger.exception("direct message to %s about the sweep of %s failed", user_id, found.row.arn)
        return told
    return announce


class SweepJob:
    """The daily sweep (ECR_COST_SWEEP_SCHEDULE), exactly once per period like the guard: announce new candidates
    to the owners, delete those announced a grace period ago that are still candidates."""

    def __init__(self, sweep, store: Store, settings: Settings, announce=None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self._sweep, self._announce = sweep, announce
        self._once = OncePerPeriod("sweep", store, settings, "sweep_schedule", clock, heartbeat_seconds)

    def current_period(self) -> str:
        return self._once.current_period()

    def run(self) -> str:
        return self._once.run(self._run)

    def _run(self, period: str) -> str:
        run = self._sweep.run(announce=self._announce)
        for found in run.repositories:
            if found.announced and self._announce is None:
                logger.warning("sweep of %s: %d image(s) announced, owners not told (no SLACK_BOT_TOKEN); deleted "
                               "after %s", found.row.arn, len(found.announced), found.deletes_after)
            for problem in found.problems:
                logger.warning("sweep of %s: %s", found.row.arn, problem)
        announced = sum(len(r.announced) for r in run.repositories)
        deleted = sum(len(r.deleted) for r in run.repositories)
        return (f"sweep {period}: {plural(len(run.repositories), 'opted-in repository')}, {plural(announced, 'image')} "
                f"announced, "
                f"{deleted} deleted")
