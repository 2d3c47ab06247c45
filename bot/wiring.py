"""The one place that builds the object graph from Settings: for serve, report, the CLI, the demo and tests.

Nothing connects at import; clients are made here and passed in.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from .adoption import Actor, PolicyChanges
from .application import Application
from .aws import EcrCollector, SessionFactory, default_session_factory
from .billing_sources import billing_sources
from .config import Settings
from .runtimes import RuntimeCollector
from .store import Store
from .usage import InUseFinder


@dataclass
class Components:
    settings: Settings
    store: Store
    collector: EcrCollector
    changes: PolicyChanges
    application: Application
    runtimes: RuntimeCollector
    in_use: InUseFinder

    def close(self) -> None:
        self.store.close()


def build(settings: Settings, session_factory: SessionFactory | None = None,
          clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Components:
    store = Store(settings.db_path)
    collector = EcrCollector(session_factory or default_session_factory(region_name=settings.aws_region),
                             settings.regions, settings.role_arns, store, org_role_name=settings.org_role_name,
                             only_accounts=settings.accounts, exclude_accounts=settings.exclude_accounts)
    kubernetes = None
    if settings.kube_contexts:
        from .kube import KubernetesReader

        kubernetes = KubernetesReader(settings.kube_contexts, settings.kubeconfig).collect
    runtimes = RuntimeCollector(collector, store, kubernetes)
    in_use = InUseFinder(runtimes, store, settings, clock, collector)
    changes = PolicyChanges(collector, store, settings, in_use, clock)
    application = Application(store, collector, changes, in_use, settings, clock,
                              billing_sources=billing_sources(settings, session_factory or default_session_factory(
                                  region_name=settings.aws_region)))
    return Components(settings, store, collector, changes, application, runtimes, in_use)


@contextmanager
def components(settings: Settings, session_factory: SessionFactory | None = None) -> Iterator[Components]:
    built = build(settings, session_factory)
    try:
        yield built
    finally:
        built.close()


def cli_actor(user_name: str) -> Actor:
    """The command line is the admins' tool: whoever holds the AWS credentials and the database may act."""
    return Actor(user_name, "cli", is_admin=True)


def build_slack(built: Components, client=None):
    """(Bolt app, directory, Web API client) over the application layer."""
    from .slack.app import build_app, web_client
    from .slack.directory import SlackDirectory

    client = client or web_client(built.settings)
    directory = SlackDirectory(client, built.settings.admins)
    return build_app(built.settings, built.application, directory, client), directory, client


def build_report_job(built: Components, client, directory, **options):
    from .jobs import ReportJob

    return ReportJob(built.application, built.store, built.settings, client, directory.owner_ids, **options)


def build_guard_job(built: Components, client, directory, **options):
    from .jobs import GuardJob

    return GuardJob(built.application, built.store, built.settings, client, directory.owner_ids, **options)


def scheduled_jobs(built: Components, client, directory) -> list:
    """The job registry: every job `serve` schedules, one entry each (id, schedule setting, callable)."""
    from .scheduler import ScheduledJob

    weekly = (build_report_job(built, client, directory).run if built.settings.report_channel
              else built.application.scan)  # no channel: the weekly job only rescans
    return [
        ScheduledJob("weekly", "schedule", weekly),
        ScheduledJob("guard", "guard_schedule", build_guard_job(built, client, directory).run),
    ]
