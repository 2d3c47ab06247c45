"""The AWS adapter that reads (and on demand changes) ECR across accounts and regions, and makes every other
adapter's clients (bot/registry.py, runtimes.py, inspector.py, doctor.py): returns core models, raises the
AwsError family (every client is wrapped by bot/aws_errors.py's ``translating``).

Sessions come from a factory (the seam tests and other credential sources plug into);
`AWS_ENDPOINT_URL` is honoured by boto3 itself.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import boto3
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from .aws_errors import translated, translating
from .core.cost import ACCEPTED_MEDIA_TYPES, parse_manifest, reachable_manifests
from .core.models import Image, Manifest, RepositoryInventory, RepositoryRef, ScanProblem
from .errors import (
    AccountLeftOut,
    AwsCredentialsRefused,
    AwsError,
    AwsNoCredentials,
    AwsNoRegion,
    AwsNotFound,
    BlobRefused,
    EstateUnreadable,
    describe,
)
from .progress import Progress

logger = logging.getLogger(__name__)
PAGE_SIZE = 1000  # the largest page ECR serves; without it ECR pages by 100
MANIFESTS_PER_CALL = 100  # BatchGetImage's limit
DEFAULT_WORKERS = 16
SESSIONS_KEPT = 4 * DEFAULT_WORKERS  # accounts whose session is kept for reuse
PROGRESS_EVERY = 30.0  # seconds between the scan's progress lines in the log
MAX_CONFIG_BYTES = 4 * 2**20  # an image config blob read for its history; larger ones are left unread


class ManifestCache(Protocol):
    def get_manifests(self, digests: Iterable[str]) -> dict[str, Manifest]: ...

    def put_manifests(self, manifests: Iterable[Manifest]) -> None: ...


class AccountSession:
    """An account entered through a role, over the one shared session: its clients are made by the shared botocore
    session (one copy of the service models, endpoint data and handlers, however many accounts) and sign with this
    account's credentials, which botocore refreshes before they expire (a long-running `serve` keeps its clients).
    Across an organisation a botocore session per account was most of the scan's memory and start-up time."""

    def __init__(self, base: boto3.Session, credentials: DeferredRefreshableCredentials):
        self._base = base
        self._credentials = credentials
        self.region_name = base.region_name

    def get_credentials(self) -> DeferredRefreshableCredentials:
        return self._credentials

    def get_partition_for_region(self, region_name: str) -> str:
        return self._base.get_partition_for_region(region_name)

    def client(self, service_name: str, region_name: str | None = None, config: Config | None = None, **kwargs):
        client = self._base.client(service_name, region_name=region_name, config=config, **kwargs)
        # the signer reads its credentials at each request: this account's, assumed at the first request (not here,
        # where the collector holds its lock) and refreshed before they expire
        client._request_signer._credentials = self._credentials
        return client


SessionFactory = Callable[[str | None], "boto3.Session | AccountSession"]


def default_session_factory(base: boto3.Session | None = None, region_name: str | None = None,
                            on_request: Callable[..., None] | None = None) -> SessionFactory:
    """role ARN -> session: None is the ambient credential chain, a role ARN is assumed through STS (an
    AccountSession over the same base session).
    ``region_name``: AWS_REGION or AWS_DEFAULT_REGION (boto3 alone reads only the latter); None leaves it to
    the profile. ``on_request``: told of each AssumeRole request (botocore's before-send event)."""
    base = base or boto3.Session(region_name=region_name)
    sts: dict[str, tuple[tuple, Any]] = {}  # the one STS client every AssumeRole goes through (per source keys)
    making = threading.Lock()

    def sts_client(service_name: str, **kwargs):
        key = tuple(sorted(kwargs.items()))
        with making:
            known = sts.get(service_name)
            if known is None or known[0] != key:  # the source credentials were refreshed: a client for the new ones
                known = sts[service_name] = (key, base._session.create_client(service_name, **kwargs))
                if on_request is not None:
                    known[1].meta.events.register("before-send", on_request)
            return known[1]

    def factory(role_arn: str | None) -> boto3.Session | AccountSession:
        if role_arn is None:
            return base
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts_client, source_credentials=base.get_credentials(),
            role_arn=role_arn, extra_args={"RoleSessionName": "ecr-cost-bot"})
        return AccountSession(base, DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                                   method="assume-role"))

    return factory


def unreadable_cause(exc: BaseException) -> str:
    """One line a newcomer can act on, for the commonest reasons no account can be read."""
    if isinstance(exc, AwsNoCredentials):
        return ("no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or run with an instance, task or pod role")
    if isinstance(exc, AwsNoRegion):
        return "no region: set ECR_COST_REGIONS or AWS_REGION"
    if isinstance(exc, AwsCredentialsRefused):
        return f"the AWS credentials were refused ({describe(exc)}): refresh them or set AWS_PROFILE"
    return f"cannot read the current AWS identity: {describe(exc)}"


@contextlib.contextmanager
def _unless(code: str) -> Iterator[None]:
    """Inside: the AWS error ``code`` (what is asked for is already so, or there is none) is swallowed."""
    try:
        yield
    except AwsError as exc:
        if exc.code != code:
            raise


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


@dataclass(frozen=True)
class Account:
    """An account we entered: its session (ambient credentials or an assumed role) and regions to read."""

    account_id: str
    session: boto3.Session
    regions: tuple[str, ...]
    name: str | None = None
    problem: str | None = None  # entered, but its enabled regions could not be listed: its home region only


@dataclass
class _Region:
    account_id: str
    region: str
    client: Any  # a boto3 ECR client, made when the region is listed


class EcrCollector:
    """Reads every repository of every configured account and region, with bounded concurrency.

    Failures are returned as ScanProblem items alongside the inventories, never raised:
    a broken account or region must not hide the rest of the estate.
    """

    def __init__(self, session_factory: SessionFactory, regions: Iterable[str], role_arns: Iterable[str],
                 manifest_cache: ManifestCache, *, max_workers: int = DEFAULT_WORKERS, org_role_name: str | None = None,
                 only_accounts: Iterable[str] = (), exclude_accounts: Iterable[str] = (),
                 progress_every: float = PROGRESS_EVERY, progress: Callable[[Progress], None] | None = None):
        self._session_factory = session_factory
        self.progress = progress  # told where a scan stands as it goes (the CLI draws it)
        self._all_regions = tuple(regions) == ("all",)
        self._regions = () if self._all_regions else tuple(regions)
        self._role_arns = tuple(role_arns)
        self._org_role_name = org_role_name
        self._only = frozenset(only_accounts)
        self._exclude = frozenset(exclude_accounts)
        self._progress_every = progress_every
        self._roles: dict[str, str] = {}  # account -> the role ARN that enters it (organisation accounts)
        self._sessions: OrderedDict[str | None, boto3.Session] = OrderedDict()  # role ARN -> its session (LRU)
        self._entered: dict[str, object] = {}  # account -> the session that entered it (small: credentials)
        self._own: tuple[str, str] | None = None  # (the bot's own account, its partition), once known
        self.account_names: dict[str, str] = {}  # account -> its name in the organisation
        self._cache = manifest_cache
        self._workers = max_workers
        self._config = Config(retries={"mode": "adaptive", "max_attempts": 8},
                              max_pool_connections=max_workers + 4, connect_timeout=10, read_timeout=60)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], object] = {}
        self._session_lock = threading.Lock()
        self.api_calls = 0  # HTTP requests sent, retries included
        self.manifests_fetched = 0
        self.notices: list[ScanProblem] = []  # complete data, but something an operator should fix
        self._principals: dict[str, str] = {}  # account -> the ARN the bot reads it as
        self._pull_time_checked: set[tuple[str, str]] = set()
        self._pull_time_api: bool | None = None  # whether the endpoint answers ListPullTimeUpdateExclusions
        self._pull_time_probe = threading.Lock()  # one thread asks until the endpoint has answered
        self.organisation_accounts: frozenset[str] = frozenset()  # ACTIVE accounts, once the organisation is listed
        self._organisation_id: str | None = None

    # -- accounts and regions -------------------------------------------------------------

    def client(self, session: boto3.Session, service: str, region: str | None = None, retries: bool = True):
        """A client with adaptive retries (or none) whose requests are counted in ``api_calls``."""
        config = self._config if retries else self._config.merge(Config(retries={"mode": "standard",
                                                                                 "total_max_attempts": 1}))
        with self._session_lock, translated(service):  # boto3 sessions are not thread-safe; their clients are
            client = session.client(service, region_name=region, config=config)
        client.meta.events.register("before-send", self.count_request)
        return translating(client)

    def count_request(self, **_) -> None:
        with self._lock:
            self.api_calls += 1

    def _plan(self, everywhere: bool = False, account: str | None = None
              ) -> tuple[Account | None, list[tuple[str, str]], list[ScanProblem], list[Exception]]:
        """(the bot's own account, entered: it lists the organisation; the (role ARN, account ID) of every other
        account to enter; the problems met; their causes). The others are each role of ECR_COST_ROLE_ARNS and,
        with ECR_COST_ORG_ROLE_NAME, every ACTIVE account of the organisation entered through that role;
        ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS filter them all, unless ``everywhere`` (where images may
        run: those filters narrow what is scanned, never where the bot looks for running images); ``account``: that
        account alone (no other account is entered)."""
        wanted = (lambda _: True) if everywhere else self._wanted
        if account is not None:
            configured = wanted
            wanted = lambda account_id: account_id == account and configured(account_id)  # noqa: E731
        own, own_error = self._enter(None)
        problems = [] if own is not None else [ScanProblem("current", "*", f"cannot read the current AWS identity: "
                                                                        f"{describe(cast(Exception, own_error))}")]
        entries = [(arn, arn.split(":")[4]) for arn in self._role_arns]
        if self._org_role_name and own is not None:
            found, problem = self._organisation(own)
            problems += [problem] if problem else []
            explicit = {account_id for _, account_id in entries}
            assert self._own is not None  # set by _enter(None) above
            partition = self._own[1]
            entries += [(f"arn:{partition}:iam::{account_id}:role/{self._org_role_name}", account_id)
                        for account_id in found if account_id != own.account_id and account_id not in explicit]
        kept: dict[str, str] = {}  # account -> the first role that enters it; the bot's own needs none
        for arn, account_id in entries:
            if wanted(account_id) and account_id not in kept and (own is None or account_id != own.account_id):
                kept[account_id] = arn
        entries = [(arn, account_id) for account_id, arn in kept.items()]
        missing = [] if everywhere else sorted(self._only - set(kept) - ({own.account_id} if own else set()))
        missing = [a for a in missing if account is None or a == account]
        problems += [ScanProblem(account_id, "*", "in ECR_COST_ACCOUNTS, but neither the bot's own account, an ACTIVE "
                                                  "account of the organisation, nor one of ECR_COST_ROLE_ARNS: not "
                                                  "scanned") for account_id in missing]
        if own is not None and own.problem and wanted(own.account_id):
            problems.append(ScanProblem(own.account_id, "*", own.problem))
        with self._lock:
            self._roles.update({account_id: arn for arn, account_id in entries})
        if own is not None:
            own = replace(own, name=self.account_names.get(own.account_id)) if wanted(own.account_id) else None
            if own is None and not entries:
                raise EstateUnreadable(f"account {account}: not scanned, ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS "
                                       f"leave it out" if account else "no account to scan: ECR_COST_ACCOUNTS / "
                                       "ECR_COST_EXCLUDE_ACCOUNTS leave none")
        elif not entries:
            raise EstateUnreadable(unreadable_cause(cast(Exception, own_error)))  # own is None: the error
        return own, entries, problems, [] if own_error is None else [own_error]

    def accounts(self, everywhere: bool = False) -> tuple[list[Account], list[ScanProblem]]:
        """Every account we can enter (see _plan; ``everywhere``: whatever the account filters say), with its
        regions and name, entered concurrently; the others as problems. Raises EstateUnreadable when not one can
        be read."""
        own, entries, problems, causes = self._plan(everywhere)
        accounts = [own] if own is not None else []
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ecr-accounts") as pool:
            for (arn, account_id), (account, error) in zip(entries, pool.map(lambda e: self._enter(e[0]), entries),
                                                                 strict=True):
                if account is None:  # then error is the exception
                    causes.append(cast(Exception, error))
                    problems.append(self._unentered(arn, account_id, cast(Exception, error)))
                else:
                    accounts.append(account)
                    if account.problem:
                        problems.append(ScanProblem(account.account_id, "*", account.problem))
        if not accounts:
            raise EstateUnreadable(unreadable_cause(causes[0]) + (
                f" (and {len(causes) - 1} assumed roles failed too)" if len(causes) > 1 else ""))
        return accounts, sorted(problems, key=lambda p: (p.account_id, p.message))

    @staticmethod
    def _unentered(arn: str, account_id: str, error: Exception) -> ScanProblem:
        return ScanProblem(account_id, "*", f"cannot assume {arn}: {describe(error)}")

    def _wanted(self, account_id: str) -> bool:
        return (not self._only or account_id in self._only) and account_id not in self._exclude

    def _session(self, role_arn: str | None) -> boto3.Session:
        """The session of ``role_arn`` (None: the bot's own), reused while it is among the latest used (its
        credentials refresh themselves); the least recently used are let go, so memory does not follow the
        organisation's size."""
        with self._lock:
            session = self._sessions.get(role_arn)
            if session is not None:
                self._sessions.move_to_end(role_arn)
                return session
        with translated("sts"):  # a profile that does not exist, ...
            session = self._session_factory(role_arn)
        with self._lock:
            session = self._sessions.setdefault(role_arn, session)
            while len(self._sessions) > SESSIONS_KEPT:
                self._sessions.popitem(last=False)
        return session

    def _enter(self, role_arn: str | None) -> tuple[Account | None, Exception | None]:
        """(the account ``role_arn`` enters, or the bot's own with None; or the error). Its regions: the
        configured ones, or with ECR_COST_REGIONS=all the ones enabled in that account."""
        try:
            session = self._session(role_arn)
            home = self._regions[0] if self._regions else session.region_name or ("us-east-1" if self._all_regions
                                                                                 else None)
            if not home:
                raise AwsNoRegion("NoRegionError", "You must specify a region.", service="sts")
            if role_arn is None:  # the bot's own credentials: only STS knows whose they are
                # a regional STS endpoint: the first region scanned, never the global endpoint by default
                identity = self.client(session, "sts", home).get_caller_identity()
                account_id, principal = identity["Account"], identity.get("Arn", "")
            else:  # a role names its account and is the principal: assuming it is the check, no GetCallerIdentity
                account_id, principal = self._assumed(session, role_arn)
            with self._lock:
                self._principals[account_id] = principal
                self._entered[account_id] = session
                if role_arn is None:
                    self._own = (account_id, principal.split(":")[1] if principal.count(":") >= 5 else "aws")
        except Exception as exc:  # noqa: BLE001 - one account's failure must not end the scan
            return None, exc
        regions, problem = self._regions or (home,), None
        if self._all_regions:
            try:
                found = self.client(session, "ec2", home).describe_regions()["Regions"]  # those enabled only
                regions = tuple(sorted(r["RegionName"] for r in found))
            except Exception as exc:  # noqa: BLE001 - the account is entered: read what can be read
                problem = (f"cannot list the regions enabled in this account (ec2:DescribeRegions): {describe(exc)}; "
                           f"only {home} was read")
        return Account(account_id, session, regions, self.account_names.get(account_id), problem), None

    @staticmethod
    def _assumed(session, role_arn: str) -> tuple[str, str]:
        """(the account, the principal) of a role, once its credentials are in hand: across an organisation a
        GetCallerIdentity per account was a sixth of the scan's calls where an account holds one repository."""
        credentials = session.get_credentials()
        if credentials is not None:
            with translated("sts", "AssumeRole"):  # the AssumeRole itself: a role that cannot be assumed fails here
                credentials.get_frozen_credentials()
        return role_arn.split(":")[4], role_arn

    def _organisation(self, own: Account) -> tuple[list[str], ScanProblem | None]:
        """The ACTIVE accounts of the organisation as the bot's account sees them (it must be the management
        account or a delegated administrator), their names remembered."""
        try:
            client = self.client(own.session, "organizations", own.regions[0])
            found = [account for page in client.get_paginator("list_accounts").paginate()
                     for account in page["Accounts"]]
        except Exception as exc:  # noqa: BLE001 - the bot's own account and ECR_COST_ROLE_ARNS still count
            return [], ScanProblem(own.account_id, "*", f"cannot list the organisation's accounts "
                                                        f"(organizations:ListAccounts, from the management account "
                                                        f"or a delegated administrator): {describe(exc)}")
        active = [a for a in found if (a.get("State") or a.get("Status")) == "ACTIVE"]
        with self._lock:
            self.account_names.update({a["Id"]: a.get("Name") or a["Id"] for a in found})
            self.organisation_accounts = frozenset(a["Id"] for a in active)
        return sorted(a["Id"] for a in active), None

    def check_access(self) -> list[ScanProblem]:
        """Enters every account (STS only): raises EstateUnreadable when none can be read; returns the others'
        problems."""
        return self.accounts()[1]

    def _list_repositories(self, target: _Region, session) -> list[tuple[RepositoryRef, datetime | None]]:
        # the region's client is made here, in a worker: made by the consumer, a client per account (30 ms of CPU
        # each) held up pricing and storing across an organisation
        target.client = self.client(session, "ecr", target.region)
        pages = target.client.get_paginator("describe_repositories").paginate(
            PaginationConfig={"PageSize": PAGE_SIZE})
        return [(RepositoryRef(target.account_id, target.region, repo["repositoryName"], repo["repositoryArn"]),
                 _utc(repo.get("createdAt")))
                for page in pages for repo in page["repositories"]]

    # -- one repository -------------------------------------------------------------------

    def read_repository(self, client, ref: RepositoryRef, created_at: datetime | None) -> RepositoryInventory:
        pages = client.get_paginator("describe_images").paginate(
            repositoryName=ref.name, registryId=ref.account_id, filter={"imageStatus": "ANY"},
            PaginationConfig={"PageSize": PAGE_SIZE})
        images = [_image(detail) for page in pages for detail in page["imageDetails"]]
        policy_text = None
        with _unless("LifecyclePolicyNotFoundException"):
            policy_text = client.get_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id)[
                "lifecyclePolicyText"]
        tags = {t["Key"]: t["Value"] for t in client.list_tags_for_resource(resourceArn=ref.arn).get("tags", [])}
        manifests, problems = self._manifests(client, ref, [i.digest for i in images])
        return RepositoryInventory(ref, created_at, tags, policy_text, images, manifests, problems)

    def _manifests(self, client, ref: RepositoryRef, digests: list[str]) -> tuple[dict[str, Manifest], list[str]]:
        """Every manifest reachable from ``digests``: from the cache, else fetched once and cached."""
        problems: list[str] = []

        def load(wanted: set[str]) -> dict[str, Manifest]:
            found = self._cache.get_manifests(wanted)
            if wanted - found.keys():
                self._check_pull_time_exclusion(ref.account_id, ref.region, client)
            fetched, failures = self._fetch(client, ref, sorted(wanted - found.keys()))
            self._cache.put_manifests(fetched.values())
            problems.extend(failures)
            problems.extend(m.problem for m in fetched.values() if m.problem)
            return found | fetched

        return reachable_manifests(digests, load), problems

    def _check_pull_time_exclusion(self, account_id: str, region: str, region_client) -> None:
        """Before the first BatchGetImage in an account and region: reading a manifest may count as a pull, and
        so make unused images look used, unless the bot's principal is on ECR's pull-time update exclusion
        list. A notice says how to register it; an API that cannot be asked (no permission) says nothing.

        Until the endpoint has answered once, one thread at a time asks, through a client without retries (an
        endpoint lacking the API must not slow the scan, and is not asked again); then each account and region
        asks with its own client (a client more per account was a sixth of an organisation scan's CPU)."""
        with self._lock:
            if (account_id, region) in self._pull_time_checked:
                return
            self._pull_time_checked.add((account_id, region))
        if self._pull_time_api is None:
            with self._pull_time_probe:
                if self._pull_time_api is None:
                    session = self._entered.get(account_id) or self._session(self._role_of(account_id))
                    self._ask_pull_time_exclusions(account_id, region, self.client(session, "ecr", region,
                                                                                   retries=False))
                    return
        if self._pull_time_api:
            self._ask_pull_time_exclusions(account_id, region, region_client)

    def _ask_pull_time_exclusions(self, account_id: str, region: str, client) -> None:
        principal = _role_arn(self._principals.get(account_id, ""))
        try:
            excluded, token = set(), None
            while True:
                page = client.list_pull_time_update_exclusions(**({"nextToken": token} if token else {}))
                excluded |= set(page.get("pullTimeUpdateExclusions", []))
                token = page.get("nextToken")
                if not token:
                    break
        except Exception as exc:  # noqa: BLE001 - best effort: an API this endpoint lacks, or no permission
            if _endpoint_lacks(exc):  # the same endpoint for every account: not asked again in this scan
                self._pull_time_api = False
            logger.info("cannot list the pull-time update exclusions in %s %s: %s", account_id, region,
                        describe(exc))
            return
        self._pull_time_api = True
        if principal and principal not in excluded:
            with self._lock:
                self.notices.append(ScanProblem(account_id, region, (
                    f"reading manifests (BatchGetImage) as {principal} may update lastRecordedPullTime and make "
                    f"unused images look used: aws ecr register-pull-time-update-exclusion --principal-arn "
                    f"{principal} --region {region}")))

    def _fetch(self, client, ref: RepositoryRef, digests: list[str]) -> tuple[dict[str, Manifest], list[str]]:
        fetched: dict[str, Manifest] = {}
        failures: list[str] = []
        for start in range(0, len(digests), MANIFESTS_PER_CALL):
            chunk = digests[start:start + MANIFESTS_PER_CALL]
            response = client.batch_get_image(
                repositoryName=ref.name, registryId=ref.account_id,
                imageIds=[{"imageDigest": d} for d in chunk], acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
            for image in response.get("images", []):
                digest = image["imageId"]["imageDigest"]
                if digest not in fetched:
                    fetched[digest] = parse_manifest(digest, image.get("imageManifestMediaType"),
                                                     image.get("imageManifest", ""))
            for failure in response.get("failures", []):
                failures.append(f"manifest {failure.get('imageId', {}).get('imageDigest', '?')} could not be read: "
                                f"{failure.get('failureCode')}: {failure.get('failureReason')}")
        with self._lock:
            self.manifests_fetched += len(fetched)
        return fetched, failures

    # -- the estate -----------------------------------------------------------------------

    def scan(self, only: str | None = None) -> Iterator[RepositoryInventory | ScanProblem]:
        """Yields each repository's inventory as soon as it is read, and each problem met (``only``: that
        account's repositories only, every region configured).

        ECR's rate limits are per account and region, so the work is spread: repositories are read
        round-robin across (account, region). Memory follows the work in flight, not the organisation:
        accounts are entered as the work reaches them (at most one batch of workers ahead), regions are listed
        only while few repositories wait, and at most twice as many repositories as workers are read at once
        (a slow consumer, pricing and storing, holds the readers back). A region's client lives as long as its
        repositories are being read; an account's session is let go once others have replaced it.
        """
        own, entries, problems, _ = self._plan(account=only)
        yield from problems
        to_enter = deque(entries)
        targets: deque[tuple[Account, str]] = deque((own, region) for region in own.regions) if own else deque()
        progress = _Progress(len(entries) + (own is not None), self._progress_every, self.progress)
        if own is not None:
            progress.entered(own.account_id, len(own.regions))
        queues: dict[tuple[str, str], deque] = {}  # (account, region) -> repositories waiting to be read
        turns: deque[tuple[str, str]] = deque()  # the keys of non-empty queues, in turn
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ecr-scan") as pool:
            pending: dict[Future, tuple] = {}

            def fill() -> None:
                while turns and len(pending) < 2 * self._workers:
                    key = turns.popleft()
                    target, ref, created_at = queues[key].popleft()
                    pending[pool.submit(self.read_repository, target.client, ref, created_at)] = \
                        ("repository", target, ref)
                    if queues[key]:
                        turns.append(key)
                    else:
                        del queues[key]
                waiting = sum(len(q) for q in queues.values())
                busy = {kind: 0 for kind in ("region", "account")}
                for kind, *_ in pending.values():
                    busy[kind] = busy.get(kind, 0) + 1
                while targets and busy["region"] < self._workers and waiting < 4 * self._workers:
                    account, region = targets.popleft()
                    target = _Region(account.account_id, region, None)  # its client is made by the worker
                    pending[pool.submit(self._list_repositories, target, account.session)] = ("region", target)
                    busy["region"] += 1
                while to_enter and busy["account"] < self._workers and len(targets) < self._workers:
                    arn, account_id = to_enter.popleft()
                    pending[pool.submit(self._enter, arn)] = ("account", arn, account_id)
                    busy["account"] += 1

            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, target, *rest = pending.pop(future)
                    error = future.exception()
                    if kind == "account":
                        account, failure = future.result()
                        if account is None:
                            progress.entered(rest[0], 0)
                            yield self._unentered(target, rest[0], failure)
                        else:
                            progress.entered(account.account_id, len(account.regions))
                            targets.extend((account, region) for region in account.regions)
                            if account.problem:
                                yield ScanProblem(account.account_id, "*", account.problem)
                        continue
                    if kind == "region":
                        found = [] if error is not None else future.result()
                        progress.listed(target.account_id, len(found))
                        if error is not None:
                            yield ScanProblem(target.account_id, target.region,
                                              f"cannot list repositories: {describe(error)}")
                        elif found:
                            key = (target.account_id, target.region)
                            queues[key] = deque((target, ref, created_at) for ref, created_at in found)
                            turns.append(key)
                        continue
                    progress.read(target.account_id)
                    if error is None:
                        yield future.result()
                    elif isinstance(error, AwsNotFound) and error.code == "RepositoryNotFoundException":
                        pass  # deleted while we were scanning: it no longer costs anything
                    else:
                        ref = rest[0]
                        yield ScanProblem(target.account_id, target.region,
                                          f"cannot read repository {ref.name}: {describe(error)}", ref.name)
                fill()
        progress.log(final=True)

    # -- one repository on demand (detail views, policy operations) --------------------------

    def client_for(self, ref: RepositoryRef):
        """The ECR client of ``ref``'s account and region (assuming the account's role), reused. An account that
        ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS leave out is never entered, not even on demand."""
        if not self._wanted(ref.account_id):
            raise AccountLeftOut(ref.account_id)
        key = (ref.account_id, ref.region)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            client = self.client(self._session(self._role_of(ref.account_id)), "ecr", ref.region)
            with self._lock:
                client = self._clients.setdefault(key, client)
        return client

    def _role_of(self, account_id: str) -> str | None:
        """The role ARN that enters ``account_id`` (None: the bot's own credentials): one of ECR_COST_ROLE_ARNS, else
        with ECR_COST_ORG_ROLE_NAME the organisation's role in any account but the bot's own."""
        explicit = next((arn for arn in self._role_arns if arn.split(":")[4] == account_id), None)
        if explicit is not None or not self._org_role_name:
            return explicit
        if account_id in self._roles:
            return self._roles[account_id]
        if self._own is None and self._enter(None)[0] is None:
            return None  # the bot's own identity cannot be read: its own credentials are all there is
        assert self._own is not None  # set by _enter(None)
        own_account, partition = self._own
        return None if account_id == own_account else f"arn:{partition}:iam::{account_id}:role/{self._org_role_name}"

    def service_client(self, account_id: str, service: str, region: str):
        """A client of ``service`` (CloudTrail, ...) in ``account_id``, through the session that enters it."""
        if not self._wanted(account_id):
            raise AccountLeftOut(account_id)
        return self.client(self._session(self._role_of(account_id)), service, region)

    def refresh(self, ref: RepositoryRef, created_at: datetime | None = None) -> RepositoryInventory:
        """Re-reads one repository. Raises AwsError."""
        return self.read_repository(self.client_for(ref), ref, created_at)

    def created_at(self, ref: RepositoryRef) -> datetime | None:
        """When the repository was created: a repository deleted and created again under the same name is
        another repository."""
        found = self.client_for(ref).describe_repositories(repositoryNames=[ref.name], registryId=ref.account_id)
        return _utc(found["repositories"][0].get("createdAt"))

    def read_tags(self, ref: RepositoryRef) -> dict[str, str]:
        """The repository's tags as AWS has them now (who may act is decided from these)."""
        response = self.client_for(ref).list_tags_for_resource(resourceArn=ref.arn)
        return {t["Key"]: t["Value"] for t in response.get("tags", [])}

    def get_lifecycle_policy(self, ref: RepositoryRef) -> str | None:
        client = self.client_for(ref)
        with _unless("LifecyclePolicyNotFoundException"):
            return client.get_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id)[
                "lifecyclePolicyText"]
        return None

    def put_lifecycle_policy(self, ref: RepositoryRef, text: str) -> None:
        self.client_for(ref).put_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id,
                                                  lifecyclePolicyText=text)

    def add_tag(self, ref: RepositoryRef, digest: str, tag: str) -> None:
        """Puts ``tag`` on the image ``digest`` (its exact manifest again: the digest stays the same)."""
        client = self.client_for(ref)
        found = client.batch_get_image(repositoryName=ref.name, registryId=ref.account_id,
                                       imageIds=[{"imageDigest": digest}], acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
        if not found.get("images"):
            failure = (found.get("failures") or [{}])[0]
            raise LookupError(f"image {digest} could not be read: {failure.get('failureCode')}: "
                              f"{failure.get('failureReason')}")
        image = found["images"][0]
        # ImageAlreadyExists: the tag is already there, what was asked for
        with _unless("ImageAlreadyExistsException"):
            client.put_image(repositoryName=ref.name, registryId=ref.account_id, imageManifest=image["imageManifest"],
                             imageManifestMediaType=image.get("imageManifestMediaType"), imageTag=tag,
                             imageDigest=digest)

    def remove_tag(self, ref: RepositoryRef, tag: str) -> None:
        """Removes ``tag``. When it is the image's last tag, ECR deletes the image: callers decide that."""
        answer = self.client_for(ref).batch_delete_image(repositoryName=ref.name, registryId=ref.account_id,
                                                         imageIds=[{"imageTag": tag}])
        failures = [f for f in answer.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
        if failures:  # ECR answers 200 and lists what it did not delete (e.g. a child its index references)
            raise LookupError(f"{failures[0].get('failureCode')}: {failures[0].get('failureReason')}")

    def delete_images(self, ref: RepositoryRef, digests: Sequence[str]) -> dict[str, str]:
        """BatchDeleteImage by digest, 100 per request: digest -> why AWS did not delete it (absent: deleted)."""
        client, failed = self.client_for(ref), {}
        for start in range(0, len(digests), 100):
            response = client.batch_delete_image(repositoryName=ref.name, registryId=ref.account_id,
                                                 imageIds=[{"imageDigest": d} for d in digests[start:start + 100]])
            for failure in response.get("failures", []):
                digest = failure.get("imageId", {}).get("imageDigest", "?")
                if failure.get("failureCode") != "ImageNotFound":  # already gone: what was asked for
                    failed[digest] = f"{failure.get('failureCode')}: {failure.get('failureReason')}"
        return failed

    def untag_repository(self, ref: RepositoryRef, key: str) -> None:
        self.client_for(ref).untag_resource(resourceArn=ref.arn, tagKeys=[key])

    def tag_repository(self, ref: RepositoryRef, key: str, value: str) -> None:
        self.client_for(ref).tag_resource(resourceArn=ref.arn, tags=[{"Key": key, "Value": value}])

    def image_digests(self, ref: RepositoryRef) -> set[str]:
        """The digests of every image in the repository now (any status)."""
        pages = self.client_for(ref).get_paginator("describe_images").paginate(
            repositoryName=ref.name, registryId=ref.account_id, filter={"imageStatus": "ANY"},
            PaginationConfig={"PageSize": PAGE_SIZE})
        return {detail["imageDigest"] for page in pages for detail in page["imageDetails"]}

    def delete_repository(self, ref: RepositoryRef) -> None:
        """Deletes the repository and every image in it (force): callers export it first."""
        self.client_for(ref).delete_repository(repositoryName=ref.name, registryId=ref.account_id, force=True)

    def manifest_documents(self, ref: RepositoryRef, digests: Iterable[str]) -> tuple[dict[str, dict], list[str]]:
        """Every manifest reachable from ``digests`` as ECR stores it: digest -> {"media_type", "manifest"} (the
        exact JSON text), and what could not be read."""
        client = self.client_for(ref)
        documents: dict[str, dict] = {}
        failures: list[str] = []
        wanted, asked = sorted(set(digests)), set()
        while wanted:
            asked.update(wanted)
            for start in range(0, len(wanted), MANIFESTS_PER_CALL):
                response = client.batch_get_image(
                    repositoryName=ref.name, registryId=ref.account_id, acceptedMediaTypes=ACCEPTED_MEDIA_TYPES,
                    imageIds=[{"imageDigest": d} for d in wanted[start:start + MANIFESTS_PER_CALL]])
                for image in response.get("images", []):
                    documents.setdefault(image["imageId"]["imageDigest"], {
                        "media_type": image.get("imageManifestMediaType"), "manifest": image.get("imageManifest")})
                failures += [f"manifest {f.get('imageId', {}).get('imageDigest', '?')}: {f.get('failureCode')}: "
                             f"{f.get('failureReason')}" for f in response.get("failures", [])]
            children = {c for digest in wanted if digest in documents
                        for c in parse_manifest(digest, documents[digest]["media_type"],
                                                documents[digest]["manifest"] or "").children}
            wanted = sorted(children - asked)
        return documents, failures

    def config_blob(self, ref: RepositoryRef, digest: str, limit: int = MAX_CONFIG_BYTES,
                    timeout: float = 20.0) -> bytes:
        """An image config blob: GetDownloadUrlForLayer, then the presigned URL read as a stream, at most ``limit``
        bytes. Raises AwsError (e.g. AwsAccessDenied without ecr:GetDownloadUrlForLayer), OSError, or
        BlobRefused (too large, or not the bytes the digest names)."""
        url = self.client_for(ref).get_download_url_for_layer(repositoryName=ref.name, registryId=ref.account_id,
                                                              layerDigest=digest)["downloadUrl"]
        if not url.lower().startswith(("https://", "http://")):
            raise BlobRefused(f"the download URL of {digest} is not HTTP(S)")
        algorithm, _, expected = digest.partition(":")
        hasher = hashlib.new(algorithm) if algorithm in ("sha256", "sha512") else None
        chunks, total = [], 0
        deadline = time.monotonic() + 2 * timeout  # a server dripping bytes must not hold `size` for long
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "*/*"}), timeout=timeout) as answer:
            while True:
                if time.monotonic() > deadline:
                    raise BlobRefused(f"config blob {digest} took longer than {2 * timeout:.0f} s: not read")
                chunk = answer.read(min(65536, limit + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise BlobRefused(f"config blob {digest} is larger than {limit // 2**20} MiB: not read")
                chunks.append(chunk)
                if hasher:
                    hasher.update(chunk)
        if hasher and hasher.hexdigest() != expected:
            raise BlobRefused(f"config blob {digest}: the bytes served do not match the digest")
        return b"".join(chunks)

    def delete_lifecycle_policy(self, ref: RepositoryRef) -> None:
        client = self.client_for(ref)
        # LifecyclePolicyNotFound: already none, that is what was asked for
        with _unless("LifecyclePolicyNotFoundException"):
            client.delete_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id)

    def repository_policy(self, ref: RepositoryRef) -> str | None:
        """The repository's permissions policy (who may pull), None when it has none."""
        client = self.client_for(ref)
        with _unless("RepositoryPolicyNotFoundException"):
            return client.get_repository_policy(repositoryName=ref.name, registryId=ref.account_id)["policyText"]
        return None

    def registry_policy(self, ref: RepositoryRef) -> str | None:
        """The registry's permissions policy of ``ref``'s account and region, None when it has none."""
        client = self.client_for(ref)
        with _unless("RegistryPolicyNotFoundException"):
            return client.get_registry_policy().get("policyText")
        return None

    def organisation_id(self) -> str | None:
        """The ID of the bot's organisation (o-…), None outside one or when it cannot be read."""
        if self._organisation_id is None:
            try:
                own = self._session(None)
                region = self._regions[0] if self._regions else own.region_name or "us-east-1"
                answer = self.client(own, "organizations", region).describe_organization()
                self._organisation_id = answer["Organization"]["Id"]
            except Exception as exc:  # noqa: BLE001 - not in an organisation, or not allowed to ask
                logger.info("cannot read the organisation's ID: %s", describe(exc))
                return None
        return self._organisation_id

    def aws_preview(self, ref: RepositoryRef, text: str, timeout: float = 120.0,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
        """AWS's own preview of ``text``: expiring image digest -> rule priority. Raises on any failure
        (the preview API is asynchronous, needs its own permissions, and moto lacks it)."""
        client = self.client_for(ref)
        client.start_lifecycle_policy_preview(repositoryName=ref.name, registryId=ref.account_id,
                                              lifecyclePolicyText=text)
        deadline = time.monotonic() + timeout
        while True:
            pages = list(client.get_paginator("get_lifecycle_policy_preview").paginate(
                repositoryName=ref.name, registryId=ref.account_id))
            status = pages[0].get("status")
            if status == "COMPLETE":
                return {r["imageDigest"]: r.get("appliedRulePriority") for page in pages
                        for r in page.get("previewResults", []) if r.get("action", {}).get("type") == "EXPIRE"}
            if status in ("FAILED", "EXPIRED") or time.monotonic() > deadline:
                raise TimeoutError(f"AWS lifecycle preview ended {status or 'without a status'}")
            sleep(2)


def _endpoint_lacks(error: Exception) -> bool:
    """Whether an error says the endpoint does not implement the operation (a server error, an unknown operation),
    rather than this principal or account being refused."""
    if not isinstance(error, AwsError):
        return False
    status = error.status or 0
    return status >= 500 or status == 404 or error.code in ("UnknownOperationException", "InvalidAction",
                                                            "NotImplemented")


def principal_role_arn(principal: str) -> str:
    """The IAM role behind an assumed-role session ARN (what IAM's policy simulator takes); others as they are."""
    return _role_arn(principal)


def _role_arn(principal: str) -> str:
    """The IAM role behind an assumed-role session ARN (what the exclusion list names); others as they are."""
    parts = principal.split(":")
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return principal


class _Progress:
    """Accounts done of total, their rate and the time left, logged every ``every`` seconds (and at the end)."""

    def __init__(self, total: int, every: float, listener: Callable[[Progress], None] | None = None):
        self._regions: dict[str, int] = {}  # account -> regions not yet listed
        self._reading: dict[str, int] = {}  # account -> repositories listed, not yet read
        self._total, self._done, self._repositories, self._listed = total, 0, 0, 0
        self._every, self._listener = every, listener
        self._started = self._last = time.monotonic()

    def entered(self, account_id: str, regions: int) -> None:
        """An account entered with its regions (0: it could not be entered, so it is done)."""
        self._regions[account_id], self._reading[account_id] = regions, 0
        self._settle(account_id)

    def listed(self, account_id: str, repositories: int) -> None:
        self._regions[account_id] -= 1
        self._reading[account_id] += repositories
        self._listed += repositories
        self._settle(account_id)

    def read(self, account_id: str) -> None:
        self._reading[account_id] -= 1
        self._repositories += 1
        self._settle(account_id)

    def _settle(self, account_id: str) -> None:
        if self._regions[account_id] == 0 and self._reading[account_id] == 0:
            self._done += 1
            del self._regions[account_id], self._reading[account_id]  # counted once; nothing kept per account
        if self._listener is not None:
            self._listener(self.snapshot())
        if time.monotonic() - self._last >= self._every:
            self.log()

    def snapshot(self, final: bool = False) -> Progress:
        return Progress(self._done, self._total, self._repositories, self._listed,
                        time.monotonic() - self._started, finished=final)

    def log(self, final: bool = False) -> None:
        if final and self._listener is not None:
            self._listener(self.snapshot(final=True))
        self._last = now = time.monotonic()
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        left = (self._total - self._done) / rate if rate else None
        eta = "" if final or left is None else f", about {left / 60:.0f} min left" if left >= 60 else \
            f", about {left:.0f} s left"
        logger.info("scan %s: %d of %d accounts done, %d repositories read in %.0f s (%.1f accounts/min, "
                    "%.1f repositories/s)%s", "finished" if final else "progress", self._done, self._total,
                    self._repositories, elapsed, rate * 60, self._repositories / elapsed, eta)


def _image(detail: dict) -> Image:
    return Image(
        digest=detail["imageDigest"],
        tags=tuple(detail.get("imageTags", ())),
        listed_bytes=int(detail.get("imageSizeInBytes") or 0),
        pushed_at=_utc(detail.get("imagePushedAt")),
        last_pulled_at=_utc(detail.get("lastRecordedPullTime")),
        media_type=detail.get("imageManifestMediaType"),
        status=detail.get("imageStatus", "ACTIVE"),
        archived_at=_utc(detail.get("lastArchivedAt")),
    )
