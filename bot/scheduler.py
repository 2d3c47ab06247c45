"""APScheduler wiring only: every scheduled job is a ``ScheduledJob`` entry (id, the setting that holds its
cron expression, the callable); ``build_scheduler`` loops over them, in ECR_COST_TIMEZONE.

A new scheduled feature is one entry in ``wiring.scheduled_jobs``: nothing here or in ``serve`` changes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from .config import Settings


@dataclass(frozen=True)
class ScheduledJob:
    id: str
    schedule_setting: str  # the Settings attribute holding the job's 5-field cron expression
    run: Callable[[], object]

    def schedule(self, settings: Settings) -> str:
        return getattr(settings, self.schedule_setting)


def build_scheduler(settings: Settings, jobs: Iterable[ScheduledJob]) -> BackgroundScheduler:
    """Not started: the caller starts it alongside the Slack app and shuts it down with it. A run missed by
    less than an hour (a busy process, a short restart) still happens once; overlapping runs never do."""
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    for job in jobs:
        scheduler.add_job(job.run, CronTrigger.from_crontab(job.schedule(settings), timezone=settings.timezone),
                          id=job.id, coalesce=True, max_instances=1, misfire_grace_time=3600)
    return scheduler
