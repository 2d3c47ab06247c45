"""The one ECR object the services hold (bot/application.py, adoption.py, sweep.py, usage.py, doctor.py) and the
other adapters make their clients through (runtimes.py, inspector.py, repository_creation.py): a thin façade over
the adapters that do the work, each named by it:

- sessions.py: the session factory and the maker of every client (adaptive retries, counted, translated);
- accounts.py: which accounts are read and how each is entered, and one repository's ECR client on demand;
- registry_reader.py: reading repositories, images, manifests (the pull-time exclusion checked), on demand too;
- scan.py: the whole estate, round-robin across accounts and regions;
- registry_writer.py: changing the registry (lifecycle policies, tags, deletions).

Its methods pass through, so callers keep one object and one interface; each part is an attribute for a caller
that needs only it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..core.models import RepositoryInventory, RepositoryRef, ScanProblem
from ..progress import Progress
from .accounts import Account, Accounts
from .registry_reader import MAX_CONFIG_BYTES, ManifestCache, RegistryReader
from .registry_writer import RegistryWriter
from .scan import PROGRESS_EVERY, EstateScan
from .sessions import DEFAULT_WORKERS, Clients, SessionFactory

if TYPE_CHECKING:
    import boto3


class EcrCollector:
    """Reads every repository of every configured account and region, with bounded concurrency, and on demand
    reads and changes one repository.

    Failures of a scan are returned as ScanProblem items alongside the inventories, never raised:
    a broken account or region must not hide the rest of the estate.
    """

    def __init__(self, session_factory: SessionFactory, regions: Iterable[str], role_arns: Iterable[str],
                 manifest_cache: ManifestCache, *, max_workers: int = DEFAULT_WORKERS, org_role_name: str | None = None,
                 only_accounts: Iterable[str] = (), exclude_accounts: Iterable[str] = (),
                 progress_every: float = PROGRESS_EVERY, progress: Callable[[Progress], None] | None = None):
        self.clients = Clients(session_factory, max_workers)
        self.estate = Accounts(self.clients, regions, role_arns, org_role_name=org_role_name,
                               only_accounts=only_accounts, exclude_accounts=exclude_accounts, max_workers=max_workers)
        self.reader = RegistryReader(self.estate, self.clients, manifest_cache)
        self.writer = RegistryWriter(self.estate)
        self.progress = progress  # told where a scan stands as it goes (the CLI draws it)
        self._workers, self._progress_every = max_workers, progress_every

    # -- what is counted and learnt along the way ----------------------------------------------------------

    @property
    def api_calls(self) -> int:
        """HTTP requests sent, retries included."""
        return self.clients.api_calls

    @property
    def manifests_fetched(self) -> int:
        return self.reader.manifests_fetched

    @property
    def notices(self) -> list[ScanProblem]:
        """Complete data, but something an operator should fix."""
        return self.reader.exclusions.notices

    @property
    def account_names(self) -> dict[str, str]:
        """Account -> its name in the organisation."""
        return self.estate.account_names

    @property
    def organisation_accounts(self) -> frozenset[str]:
        """The ACTIVE accounts, once the organisation is listed."""
        return self.estate.organisation_accounts

    # -- clients and accounts ------------------------------------------------------------------------------

    def client(self, session: boto3.Session, service: str, region: str | None = None, retries: bool = True):
        return self.clients.client(session, service, region, retries)

    def count_request(self, **event) -> None:
        self.clients.count_request(**event)

    def accounts(self, everywhere: bool = False) -> tuple[list[Account], list[ScanProblem]]:
        return self.estate.accounts(everywhere)

    def check_access(self) -> list[ScanProblem]:
        """Enters every account (STS only): raises EstateUnreadable when none can be read; returns the others'
        problems."""
        return self.estate.accounts()[1]

    def client_for(self, ref: RepositoryRef):
        return self.estate.client_for(ref)

    def service_client(self, account_id: str, service: str, region: str):
        return self.estate.service_client(account_id, service, region)

    def organisation_id(self) -> str | None:
        return self.estate.organisation_id()

    # -- reading -------------------------------------------------------------------------------------------

    def scan(self, only: str | None = None) -> Iterator[RepositoryInventory | ScanProblem]:
        """Yields each repository's inventory as soon as it is read, and each problem met (``only``: that
        account's repositories only, every region configured); see EstateScan."""
        yield from EstateScan(self.estate, self.reader, self._workers, self._progress_every, self.progress).run(only)

    def refresh(self, ref: RepositoryRef, created_at: datetime | None = None) -> RepositoryInventory:
        return self.reader.refresh(ref, created_at)

    def created_at(self, ref: RepositoryRef) -> datetime | None:
        return self.reader.created_at(ref)

    def read_tags(self, ref: RepositoryRef) -> dict[str, str]:
        return self.reader.read_tags(ref)

    def get_lifecycle_policy(self, ref: RepositoryRef) -> str | None:
        return self.reader.get_lifecycle_policy(ref)

    def repository_policy(self, ref: RepositoryRef) -> str | None:
        return self.reader.repository_policy(ref)

    def registry_policy(self, ref: RepositoryRef) -> str | None:
        return self.reader.registry_policy(ref)

    def image_digests(self, ref: RepositoryRef) -> set[str]:
        return self.reader.image_digests(ref)

    def manifest_documents(self, ref: RepositoryRef, digests: Iterable[str]) -> tuple[dict[str, dict], list[str]]:
        return self.reader.manifest_documents(ref, digests)

    def config_blob(self, ref: RepositoryRef, digest: str, limit: int = MAX_CONFIG_BYTES,
                    timeout: float = 20.0) -> bytes:
        return self.reader.config_blob(ref, digest, limit, timeout)

    def aws_preview(self, ref: RepositoryRef, text: str, timeout: float = 120.0,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
        return self.reader.aws_preview(ref, text, timeout, sleep)

    # -- changing ------------------------------------------------------------------------------------------

    def put_lifecycle_policy(self, ref: RepositoryRef, text: str) -> None:
        self.writer.put_lifecycle_policy(ref, text)

    def delete_lifecycle_policy(self, ref: RepositoryRef) -> None:
        self.writer.delete_lifecycle_policy(ref)

    def add_tag(self, ref: RepositoryRef, digest: str, tag: str) -> None:
        self.writer.add_tag(ref, digest, tag)

    def remove_tag(self, ref: RepositoryRef, tag: str) -> None:
        self.writer.remove_tag(ref, tag)

    def delete_images(self, ref: RepositoryRef, digests: Sequence[str]) -> dict[str, str]:
        return self.writer.delete_images(ref, digests)

    def tag_repository(self, ref: RepositoryRef, key: str, value: str) -> None:
        self.writer.tag_repository(ref, key, value)

    def untag_repository(self, ref: RepositoryRef, key: str) -> None:
        self.writer.untag_repository(ref, key)

    def delete_repository(self, ref: RepositoryRef) -> None:
        self.writer.delete_repository(ref)
