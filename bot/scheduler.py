"""APScheduler wiring only: the weekly job on ECR_COST_SCHEDULE and the daily guard on ECR_COST_GUARD_SCHEDULE,
in ECR_COST_TIMEZONE."""
from __future__ import annotations

from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from .config import Settings

WEEKLY_JOB_ID = "weekly"
GUARD_JOB_ID = "guard"


def build_scheduler(settings: Settings, weekly_job: Callable[[], object],
                    guard_job: Callable[[], object] | None = None) -> BackgroundScheduler:
    """Not started: the caller starts it alongside the Slack app and shuts it down with it."""
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    scheduler.add_job(weekly_job, CronTrigger.from_crontab(settings.schedule, timezone=settings.timezone),
                      id=WEEKLY_JOB_ID, coalesce=True, max_instances=1, misfire_grace_time=3600)
    if guard_job is not None:
        scheduler.add_job(guard_job, CronTrigger.from_crontab(settings.guard_schedule, timezone=settings.timezone),
                          id=GUARD_JOB_ID, coalesce=True, max_instances=1, misfire_grace_time=3600)
    return scheduler
