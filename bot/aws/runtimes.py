"""Where images run, read from AWS: ECS (services, their deployments' task definitions and service revisions,
running tasks) and Lambda (image functions: $LATEST, every version, every alias), in every account and region
the scan covers, plus Kubernetes through bot/kube.py. Returns core references; resolution is in core/inuse.py.

A source that cannot be read is a named SourceProblem, never silence: the in-use set is then partial.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ..core.inuse import Reference, SourceProblem, Usage, looks_like_ecr, parse_image_uri
from ..errors import describe
from ..progress import StepClock
from .accounts import Account
from .ecr import EcrCollector

logger = logging.getLogger(__name__)
DESCRIBE_SERVICES_MAX = 10  # DescribeServices takes at most 10 services
DESCRIBE_TASKS_MAX = 100  # DescribeTasks takes at most 100 tasks
DESCRIBE_SERVICE_REVISIONS_MAX = 20  # DescribeServiceRevisions takes at most 20 revisions


class TaskDefinitionCache(Protocol):
    """Task definitions are immutable per revision ARN: read once, ever."""

    def task_definition_images(self, arns: Iterable[str]) -> dict[str, list[str]]: ...

    def put_task_definition_images(self, images: dict[str, list[str]]) -> None: ...


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class RuntimeCollector:
    def __init__(self, collector: EcrCollector, cache: TaskDefinitionCache,
                 kubernetes: Callable[[], tuple[list[Reference], list[SourceProblem]]] | None = None,
                 max_workers: int = 8, regions: tuple[str, ...] = ()):
        self._collector = collector
        self._regions = regions  # ECR_COST_RUNTIME_REGIONS; empty: every region enabled in each account
        self._enabled: dict[str, tuple[str, ...]] = {}  # account -> its enabled regions, listed once
        self._cache = cache
        self._kubernetes = kubernetes
        self._workers = max_workers
        self.task_definitions_read = 0
        self.readable_accounts: frozenset[str] = frozenset()  # where the latest collection read the runtimes

    def collect(self) -> tuple[list[Reference], list[SourceProblem]]:
        """Every image reference of every runtime, and the runtimes that could not be read."""
        # every account the bot can enter, whatever ECR_COST_ACCOUNTS says: a workload account runs the images
        # of a central registry
        accounts, account_problems = self._collector.accounts(everywhere=True)
        self.readable_accounts = frozenset(a.account_id for a in accounts)
        problems = [SourceProblem("aws", p.account_id, p.region, p.message) for p in account_problems]
        references: list[Reference] = []
        jobs = []
        for account in accounts:
            regions, region_problem = self._runtime_regions(account)
            problems += [region_problem] if region_problem is not None else []
            jobs += [(reader, account, region) for region in regions for reader in (self._ecs, self._lambda)]
        steps = StepClock("runtime reads (ECS, Lambda in an account and region)", len(jobs))
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="in-use") as pool:
            for found, problem in pool.map(lambda job: self._run(*job), jobs):
                references += found
                problems += problem
                steps.step()
        from .inspector import inspector_references  # optional: never a partial check

        references += inspector_references(self._collector, accounts, max_workers=self._workers)
        if self._kubernetes is not None:
            found, problem = self._kubernetes()
            references += found
            problems += problem
        return references, problems

    def _runtime_regions(self, account: Account) -> tuple[tuple[str, ...], SourceProblem | None]:
        """Where this account's ECS and Lambda are read: ECR_COST_RUNTIME_REGIONS, else every region enabled in it
        (images are pulled across regions). Regions that cannot be listed: the scanned ones, and the check is
        partial, naming why."""
        if self._regions:
            return self._regions, None
        if account.account_id not in self._enabled:
            try:
                client = self._collector.client(account.session, "ec2", account.regions[0])
                self._enabled[account.account_id] = tuple(sorted(r["RegionName"]
                                                                 for r in client.describe_regions()["Regions"]))
            except Exception as exc:  # noqa: BLE001 - read where it can, and say where it could not
                return account.regions, SourceProblem(
                    "aws", account.account_id, "*",
                    f"cannot list the regions enabled in this account (ec2:DescribeRegions): {describe(exc)}; "
                    f"ECS and Lambda were read only in {', '.join(account.regions)} (an image running in another "
                    f"region is not seen: grant ec2:DescribeRegions, or set ECR_COST_RUNTIME_REGIONS)")
        return self._enabled[account.account_id], None

    def _run(self, reader, account: Account, region: str) -> tuple[list[Reference], list[SourceProblem]]:
        source = "ecs" if reader == self._ecs else "lambda"
        unreadable: list[str] = []  # ECR image references this bot cannot parse: named, never dropped
        try:
            found = reader(account, region, unreadable)
        except Exception as exc:  # noqa: BLE001 - one runtime's failure is named, never fatal
            logger.warning("cannot read %s in %s %s: %s", source, account.account_id, region, exc)
            return [], [SourceProblem(source, account.account_id, region, describe(exc))]
        return found, [SourceProblem(source, account.account_id, region, f"cannot read the image reference {uri!r}")
                       for uri in dict.fromkeys(unreadable)]

    # -- ECS ---------------------------------------------------------------------------------------

    def _ecs(self, account: Account, region: str, unreadable: list[str]) -> list[Reference]:
        client = self._collector.client(account.session, "ecs", region)
        found: list[Reference] = []
        definitions: dict[str, list[Usage]] = {}  # task definition ARN -> who runs it
        revisions: dict[str, list[Usage]] = {}  # service revision ARN -> its service: described 20 at a time

        def add(uri: str | None, usage: Usage) -> None:
            _add(found, unreadable, uri, usage)

        for page in client.get_paginator("list_clusters").paginate():
            for cluster in page.get("clusterArns", []):
                services = [arn for p in client.get_paginator("list_services").paginate(cluster=cluster)
                            for arn in p.get("serviceArns", [])]
                for chunk in _chunks(services, DESCRIBE_SERVICES_MAX):
                    for service in client.describe_services(cluster=cluster, services=chunk).get("services", []):
                        usage = Usage("ecs-service", f"{_short(cluster)}/{service.get('serviceName')}",
                                      account.account_id, region)
                        # rolling deployments, and blue/green (CODE_DEPLOY, EXTERNAL) task sets
                        for deployment in [*service.get("deployments", []), *service.get("taskSets", [])]:
                            if deployment.get("taskDefinition"):
                                definitions.setdefault(deployment["taskDefinition"], []).append(usage)
                        for revision in service.get("currentServiceRevisions", []):
                            if "arn" in revision:
                                revisions.setdefault(revision["arn"], []).append(usage)
                tasks = [arn for p in client.get_paginator("list_tasks").paginate(cluster=cluster,
                                                                                  desiredStatus="RUNNING")
                         for arn in p.get("taskArns", [])]
                for chunk in _chunks(tasks, DESCRIBE_TASKS_MAX):
                    for task in client.describe_tasks(cluster=cluster, tasks=chunk).get("tasks", []):
                        usage = Usage("ecs-task", f"{_short(cluster)}/{_short(task['taskArn'])}",
                                      account.account_id, region)
                        for container in task.get("containers", []):
                            add(container.get("image"), usage)  # as written: a tag resolves to now
                            add(_with_digest(container.get("image"), container.get("imageDigest")), usage)
                        if task.get("taskDefinitionArn"):
                            definitions.setdefault(task["taskDefinitionArn"], []).append(usage)
        for chunk in _chunks(list(revisions), DESCRIBE_SERVICE_REVISIONS_MAX):  # across services and clusters
            for revision in client.describe_service_revisions(serviceRevisionArns=chunk).get("serviceRevisions", []):
                for usage in revisions.get(revision.get("serviceRevisionArn", ""), []):
                    for image in revision.get("containerImages", []):
                        add(_with_digest(image.get("image"), image.get("imageDigest")), usage)
        for arn, images in self._task_definitions(client, list(definitions)).items():
            for usage in definitions[arn]:
                for uri in images:
                    add(uri, usage)
        return found

    def _task_definitions(self, client, arns: list[str]) -> dict[str, list[str]]:
        known = self._cache.task_definition_images(arns)
        fetched = {}
        for arn in [a for a in arns if a not in known]:
            definition = client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            fetched[arn] = [c["image"] for c in definition.get("containerDefinitions", []) if c.get("image")]
        if fetched:
            self._cache.put_task_definition_images(fetched)
            self.task_definitions_read += len(fetched)
        return known | fetched

    # -- Lambda ------------------------------------------------------------------------------------

    def _lambda(self, account: Account, region: str, unreadable: list[str]) -> list[Reference]:
        client = self._collector.client(account.session, "lambda", region)
        found: list[Reference] = []
        for page in client.get_paginator("list_functions").paginate():
            for function in page.get("Functions", []):
                if function.get("PackageType") != "Image":
                    continue
                name = function["FunctionName"]
                versions = ["$LATEST"]
                for listed in client.get_paginator("list_versions_by_function").paginate(FunctionName=name):
                    versions += [v["Version"] for v in listed.get("Versions", []) if v["Version"] != "$LATEST"]
                images: dict[str, tuple[str | None, str | None]] = {}  # version -> (as written, resolved)
                for version in versions:
                    usage = Usage("lambda", f"{name}:{version}", account.account_id, region)
                    for uri in _function_image(client, name, version, images):
                        _add(found, unreadable, uri, usage)
                # an alias runs the version(s) it points at, already read above: no GetFunction of its own
                for page_of_aliases in client.get_paginator("list_aliases").paginate(FunctionName=name):
                    for alias in page_of_aliases.get("Aliases", []):
                        usage = Usage("lambda", f"{name}:{alias['Name']}", account.account_id, region)
                        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                        for version in [alias.get("FunctionVersion") or "$LATEST", *weights]:
                            for uri in _function_image(client, name, version, images):
                                _add(found, unreadable, uri, usage)
        return found


def _function_image(client, name: str, version: str, images: dict) -> tuple[str | None, str | None]:
    """(image as written, image resolved) of one version of a function: one GetFunction per version, kept."""
    if version not in images:
        code = client.get_function(FunctionName=name, Qualifier=version).get("Code", {})
        images[version] = (code.get("ImageUri"), code.get("ResolvedImageUri"))
    return images[version]


def _add(found: list[Reference], unreadable: list[str], uri: str | None, usage: Usage) -> None:
    """The reference ``uri`` makes, if it names an ECR image; an ECR-looking one that cannot be read is noted."""
    ref = parse_image_uri(uri or "")
    if ref is not None:
        found.append(Reference(ref, usage))
    elif uri is not None and looks_like_ecr(uri):
        unreadable.append(uri)


def _with_digest(image: str | None, digest: str | None) -> str | None:
    """`repo@digest` from an image as written (tag or digest) and the digest a runtime resolved."""
    if not image or not digest:
        return None
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{digest}"
