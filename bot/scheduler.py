"""APScheduler wiring only: the weekly job on ECR_COST_SCHEDULE in ECR_COST_TIMEZONE."""
from __future__ import annotations

from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from .config import Settings

WEEKLY_JOB_ID = "weekly"


def build_scheduler(settings: Settings, weekly_job: Callable[[], object]) -> BackgroundScheduler:
    """Not started: the caller starts it alongside the Slack app and shuts it down with it."""
    scheduler = BackgroundScheduler(timezone=settings.timezone)
    scheduler.add_job(weekly_job, CronTrigger.from_crontab(settings.schedule, timezone=settings.timezone),
                      id=WEEKLY_JOB_ID, coalesce=True, max_instances=1, misfire_grace_time=3600)
    return scheduler
