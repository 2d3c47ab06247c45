"""Reads the registry: a region's repositories; a repository's images, lifecycle policy, tags and every manifest
reachable from its images (cached by digest, fetched once; before the first BatchGetImage of an account and region,
whether the bot's principal is on ECR's pull-time update exclusion list); and on demand what the services ask of
one repository (its tags, policies, digests, manifests as stored, a config blob, AWS's own lifecycle preview).
Returns core models; raises the AwsError family.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.cost import ACCEPTED_MEDIA_TYPES, parse_manifest, reachable_manifests
from ..core.models import Image, Manifest, RepositoryInventory, RepositoryRef, ScanProblem
from ..errors import AwsError, BlobRefused, describe
from .accounts import Accounts, principal_role_arn
from .errors import unless
from .sessions import Clients

logger = logging.getLogger(__name__)
PAGE_SIZE = 1000  # the largest page ECR serves; without it ECR pages by 100
MANIFESTS_PER_CALL = 100  # BatchGetImage's limit
MAX_CONFIG_BYTES = 4 * 2**20  # an image config blob read for its history; larger ones are left unread


class ManifestCache(Protocol):
    def get_manifests(self, digests: Iterable[str]) -> dict[str, Manifest]: ...

    def put_manifests(self, manifests: Iterable[Manifest]) -> None: ...


@dataclass
class Region:
    account_id: str
    region: str
    client: Any  # a boto3 ECR client, made when the region is listed


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


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


def _endpoint_lacks(error: Exception) -> bool:
    """Whether an error says the endpoint does not implement the operation (a server error, an unknown operation),
    rather than this principal or account being refused."""
    if not isinstance(error, AwsError):
        return False
    status = error.status or 0
    return status >= 500 or status == 404 or error.code in ("UnknownOperationException", "InvalidAction",
                                                            "NotImplemented")


class PullTimeExclusions:
    """Reading a manifest may count as a pull, and so make unused images look used, unless the bot's principal is
    on ECR's pull-time update exclusion list: asked once per account and region, a notice when it is not."""

    def __init__(self, accounts: Accounts, clients: Clients):
        self._accounts, self._clients = accounts, clients
        self._lock = threading.Lock()
        self._checked: set[tuple[str, str]] = set()
        self._api: bool | None = None  # whether the endpoint answers ListPullTimeUpdateExclusions
        self._probe = threading.Lock()  # one thread asks until the endpoint has answered
        self.notices: list[ScanProblem] = []  # complete data, but something an operator should fix

    def check(self, account_id: str, region: str, region_client) -> None:
        """Before the first BatchGetImage in an account and region. A notice says how to register the principal; an
        API that cannot be asked (no permission) says nothing.

        Until the endpoint has answered once, one thread at a time asks, through a client without retries (an
        endpoint lacking the API must not slow the scan, and is not asked again); then each account and region
        asks with its own client (a client more per account was a sixth of an organisation scan's CPU)."""
        with self._lock:
            if (account_id, region) in self._checked:
                return
            self._checked.add((account_id, region))
        if self._api is None:
            with self._probe:
                if self._api is None:
                    session = self._accounts.session_of(account_id)
                    self._ask(account_id, region, self._clients.client(session, "ecr", region, retries=False))
                    return
        if self._api:
            self._ask(account_id, region, region_client)

    def _ask(self, account_id: str, region: str, client) -> None:
        principal = principal_role_arn(self._accounts.principal(account_id))
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
                self._api = False
            logger.info("cannot list the pull-time update exclusions in %s %s: %s", account_id, region,
                        describe(exc))
            return
        self._api = True
        if principal and principal not in excluded:
            with self._lock:
                self.notices.append(ScanProblem(account_id, region, (
                    f"reading manifests (BatchGetImage) as {principal} may update lastRecordedPullTime and make "
                    f"unused images look used: aws ecr register-pull-time-update-exclusion --principal-arn "
                    f"{principal} --region {region}")))


class RegistryReader:
    """Reads repositories through the accounts' ECR clients; manifests through ``manifest_cache``."""

    def __init__(self, accounts: Accounts, clients: Clients, manifest_cache: ManifestCache):
        self._accounts, self._clients, self._cache = accounts, clients, manifest_cache
        self._lock = threading.Lock()
        self.exclusions = PullTimeExclusions(accounts, clients)
        self.manifests_fetched = 0

    def list_repositories(self, target: Region, session) -> list[tuple[RepositoryRef, datetime | None]]:
        # the region's client is made here, in a worker: made by the consumer, a client per account (30 ms of CPU
        # each) held up pricing and storing across an organisation
        target.client = self._clients.client(session, "ecr", target.region)
        pages = target.client.get_paginator("describe_repositories").paginate(
            PaginationConfig={"PageSize": PAGE_SIZE})
        return [(RepositoryRef(target.account_id, target.region, repo["repositoryName"], repo["repositoryArn"]),
                 _utc(repo.get("createdAt")))
                for page in pages for repo in page["repositories"]]

    def read_repository(self, client, ref: RepositoryRef, created_at: datetime | None) -> RepositoryInventory:
        pages = client.get_paginator("describe_images").paginate(
            repositoryName=ref.name, registryId=ref.account_id, filter={"imageStatus": "ANY"},
            PaginationConfig={"PageSize": PAGE_SIZE})
        images = [_image(detail) for page in pages for detail in page["imageDetails"]]
        policy_text = None
        with unless("LifecyclePolicyNotFoundException"):
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
                self.exclusions.check(ref.account_id, ref.region, client)
            fetched, failures = self._fetch(client, ref, sorted(wanted - found.keys()))
            self._cache.put_manifests(fetched.values())
            problems.extend(failures)
            problems.extend(m.problem for m in fetched.values() if m.problem)
            return found | fetched

        return reachable_manifests(digests, load), problems

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

    # -- one repository on demand (detail views, policy operations) --------------------------

    def refresh(self, ref: RepositoryRef, created_at: datetime | None = None) -> RepositoryInventory:
        """Re-reads one repository. Raises AwsError."""
        return self.read_repository(self._accounts.client_for(ref), ref, created_at)

    def created_at(self, ref: RepositoryRef) -> datetime | None:
        """When the repository was created: a repository deleted and created again under the same name is
        another repository."""
        found = self._accounts.client_for(ref).describe_repositories(repositoryNames=[ref.name],
                                                                     registryId=ref.account_id)
        return _utc(found["repositories"][0].get("createdAt"))

    def read_tags(self, ref: RepositoryRef) -> dict[str, str]:
        """The repository's tags as AWS has them now (who may act is decided from these)."""
        response = self._accounts.client_for(ref).list_tags_for_resource(resourceArn=ref.arn)
        return {t["Key"]: t["Value"] for t in response.get("tags", [])}

    def get_lifecycle_policy(self, ref: RepositoryRef) -> str | None:
        client = self._accounts.client_for(ref)
        with unless("LifecyclePolicyNotFoundException"):
            return client.get_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id)[
                "lifecyclePolicyText"]
        return None

    def repository_policy(self, ref: RepositoryRef) -> str | None:
        """The repository's permissions policy (who may pull), None when it has none."""
        client = self._accounts.client_for(ref)
        with unless("RepositoryPolicyNotFoundException"):
            return client.get_repository_policy(repositoryName=ref.name, registryId=ref.account_id)["policyText"]
        return None

    def registry_policy(self, ref: RepositoryRef) -> str | None:
        """The registry's permissions policy of ``ref``'s account and region, None when it has none."""
        client = self._accounts.client_for(ref)
        with unless("RegistryPolicyNotFoundException"):
            return client.get_registry_policy().get("policyText")
        return None

    def image_digests(self, ref: RepositoryRef) -> set[str]:
        """The digests of every image in the repository now (any status)."""
        pages = self._accounts.client_for(ref).get_paginator("describe_images").paginate(
            repositoryName=ref.name, registryId=ref.account_id, filter={"imageStatus": "ANY"},
            PaginationConfig={"PageSize": PAGE_SIZE})
        return {detail["imageDigest"] for page in pages for detail in page["imageDetails"]}

    def manifest_documents(self, ref: RepositoryRef, digests: Iterable[str]) -> tuple[dict[str, dict], list[str]]:
        """Every manifest reachable from ``digests`` as ECR stores it: digest -> {"media_type", "manifest"} (the
        exact JSON text), and what could not be read."""
        client = self._accounts.client_for(ref)
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
        url = self._accounts.client_for(ref).get_download_url_for_layer(
            repositoryName=ref.name, registryId=ref.account_id, layerDigest=digest)["downloadUrl"]
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

    def aws_preview(self, ref: RepositoryRef, text: str, timeout: float = 120.0,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
        """AWS's own preview of ``text``: expiring image digest -> rule priority. Raises on any failure
        (the preview API is asynchronous, needs its own permissions, and moto lacks it)."""
        client = self._accounts.client_for(ref)
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
