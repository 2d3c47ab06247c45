"""The one place that builds the object graph from Settings: for serve, report, the CLI, the demo and tests.

Nothing connects at import; clients are made here and passed in.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .aws.ecr import EcrCollector
from .aws.sessions import SessionFactory, default_session_factory
from .config import Settings
from .gate import Actor, Gate
from .lookups import Lookups
from .scans import ScanService
from .store import Store

# The services beyond the scan are imported by build(): `scan`, run from cron across an organisation, loads only what
# it needs (a third of the start-up time)
if TYPE_CHECKING:
    from .adoption import PolicyChanges
    from .application import Application
    from .aws.billing import BillingSources
    from .aws.runtimes import RuntimeCollector
    from .billing import BillingService
    from .claims import OwnershipClaims
    from .deletion import RepositoryDeletion
    from .detail import DetailService
    from .guard import GuardService
    from .limits import LimitService
    from .report import ReportService
    from .size import SizeService
    from .sweep import SweepService
    from .tags import TagChanges
    from .templates import TemplateService
    from .tuning import TuningService
    from .usage import InUseFinder
    from .watch import WatchService


@dataclass
class Components:
    settings: Settings
    store: Store
    collector: EcrCollector
    changes: PolicyChanges
    application: Application
    runtimes: RuntimeCollector
    in_use: InUseFinder
    services: Services
    watch: WatchService | None = None
    limits: LimitService | None = None
    templates: TemplateService | None = None
    sweep: SweepService | None = None

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class Services:
    """The feature services (bot/application.py binds the surfaces' names to them)."""

    gate: Gate
    tags: TagChanges
    changes: PolicyChanges
    scans: ScanService
    lookups: Lookups
    billing: BillingService
    detail: DetailService
    tuning: TuningService
    deletion: RepositoryDeletion
    claims: OwnershipClaims
    guard: GuardService
    size: SizeService
    report: ReportService


def build_collector(settings: Settings, manifest_cache, session_factory: SessionFactory | None = None) -> EcrCollector:
    """The AWS reader of the configured accounts and regions (`build`'s, and doctor's without a database)."""
    made: list[EcrCollector] = []  # the AssumeRole requests of its sessions count among its API requests
    collector = EcrCollector(
        session_factory or default_session_factory(region_name=settings.aws_region,
                                                   on_request=lambda **event: made[0].count_request(**event)),
        settings.regions, settings.role_arns, manifest_cache, org_role_name=settings.org_role_name,
        only_accounts=settings.accounts, exclude_accounts=settings.exclude_accounts)
    made.append(collector)
    return collector


@dataclass
class Scanning:
    """What `scan` needs: the store, the collector and the scan and lookup services, built as build() builds them."""

    settings: Settings
    store: Store
    collector: EcrCollector
    scans: ScanService
    lookups: Lookups

    def close(self) -> None:
        self.store.close()


def scan_services(settings: Settings, store: Store, collector: EcrCollector,
                  clock: Callable[[], datetime]) -> tuple[Gate, ScanService, Lookups]:
    gate = Gate(collector, store, settings, clock)
    scans = ScanService(store, collector, gate, settings, clock)
    return gate, scans, Lookups(scans, store, collector)


@contextmanager
def scanning(settings: Settings, session_factory: SessionFactory | None = None) -> Iterator[Scanning]:
    store = Store(settings.db_path)
    try:
        collector = build_collector(settings, store, session_factory)
        _, scans, lookups = scan_services(settings, store, collector, lambda: datetime.now(UTC))
        yield Scanning(settings, store, collector, scans, lookups)
    finally:
        store.close()


def build(settings: Settings, session_factory: SessionFactory | None = None,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Components:
    from .application import Application
    from .aws.billing import billing_sources
    from .aws.repository_creation import Registry
    from .aws.runtimes import RuntimeCollector
    from .limits import LimitService
    from .sweep import SweepService
    from .templates import TemplateService
    from .usage import InUseFinder
    from .watch import WatchService

    store = Store(settings.db_path)
    collector = build_collector(settings, store, session_factory)
    kubernetes = None
    if settings.kube_contexts:
        from .kube import KubernetesReader

        kubernetes = KubernetesReader(settings.kube_contexts, settings.kubeconfig).collect
    runtimes = RuntimeCollector(collector, store, kubernetes, regions=settings.runtime_regions)
    in_use = InUseFinder(runtimes, store, settings, clock, collector)
    sources = billing_sources(settings, session_factory or default_session_factory(region_name=settings.aws_region))
    services = build_services(settings, store, collector, in_use, sources, clock)
    application = Application(
        scans=services.scans, lookups=services.lookups, detail=services.detail, tuning=services.tuning,
        changes=services.changes, deletion=services.deletion, claims=services.claims, guard=services.guard,
        size=services.size, report=services.report, billing=services.billing, store=store, settings=settings,
        in_use=in_use)
    registry = Registry(collector)
    sweep = application.sweep = SweepService(services.scans.scan, collector, store, in_use, settings, clock)
    return Components(settings, store, collector, services.changes, application, runtimes, in_use, services,
                      watch=WatchService(services.scans, services.size, store, settings, registry, clock),
                      limits=LimitService(services.tags, store),
                      templates=TemplateService(registry, store, settings, clock), sweep=sweep)


def build_services(settings: Settings, store: Store, collector: EcrCollector, in_use: InUseFinder,
                   sources: BillingSources, clock: Callable[[], datetime]) -> Services:
    """The feature services over one store and one collector, each given only the services it uses."""
    from .adoption import PolicyChanges
    from .billing import BillingService
    from .claims import OwnershipClaims
    from .deletion import RepositoryDeletion
    from .detail import DetailService
    from .guard import GuardService
    from .report import ReportService
    from .size import SizeService
    from .tags import TagChanges
    from .tuning import TuningService

    gate, scans, lookups = scan_services(settings, store, collector, clock)
    tags = TagChanges(collector, gate)
    changes = PolicyChanges(collector, gate, store, settings, in_use, clock)
    billing = BillingService(store, scans, settings, sources, clock)
    detail = DetailService(scans, lookups, changes, billing, store, settings, clock)
    return Services(
        gate=gate, tags=tags, changes=changes, scans=scans, lookups=lookups, billing=billing, detail=detail,
        tuning=TuningService(detail, scans, changes, settings),
        deletion=RepositoryDeletion(collector, gate, store, settings, in_use, clock),
        claims=OwnershipClaims(gate, tags, store, settings.owner_tag),
        guard=GuardService(scans, lookups, changes, in_use, store, clock),
        size=SizeService(store, collector, settings),
        report=ReportService(store, changes, billing, settings, clock))


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
    from .slack import watch as slack_watch

    app = build_app(built.settings, built.application, directory, client)
    assert built.limits is not None and built.templates is not None  # build() sets them
    slack_watch.register(app, built.application, built.limits, built.templates, directory)
    return app, directory, client


def build_report_job(built: Components, client, directory, **options):
    from .jobs import ReportJob

    return ReportJob(built.application, built.store, built.settings, client, directory.owner_ids, **options)


def build_guard_job(built: Components, client, directory, **options):
    from .jobs import GuardJob

    return GuardJob(built.application, built.store, built.settings, client, directory.owner_ids, **options)


def build_watch_notifier(built: Components, client, directory):
    from .watch import WatchNotifier

    return WatchNotifier(built.store, built.settings, client, directory.owner_ids)


def build_watch_job(built: Components, client, directory, **options):
    from .jobs import WatchJob

    return WatchJob(built.watch, build_watch_notifier(built, client, directory), built.application.scan, built.store,
                    built.settings, **options)


def scheduled_jobs(built: Components, client, directory) -> list:
    """The job registry: every job `serve` schedules, one entry each (id, schedule setting, callable)."""
    from .scheduler import ScheduledJob

    weekly = (build_report_job(built, client, directory).run if built.settings.report_channel
              else built.application.scan)  # no channel: the weekly job only rescans
    return [
        ScheduledJob("weekly", "schedule", weekly),
        ScheduledJob("guard", "guard_schedule", build_guard_job(built, client, directory).run),
        ScheduledJob("watch", "watch_schedule", build_watch_job(built, client, directory).run),
        ScheduledJob("sweep", "sweep_schedule", build_sweep_job(built, client, directory).run),
    ]


def build_sweep_job(built: Components, client, directory, **options):
    from .jobs import SweepJob, sweep_announcer

    announce = sweep_announcer(client, directory.owner_ids) if built.settings.slack_bot_token else None
    return SweepJob(built.sweep, built.store, built.settings, announce, **options)
