"""Sessions and clients: the session factory (the ambient credential chain, or a role assumed through STS over the
one shared session: the seam tests and other credential sources plug into), and the maker of every client the
adapters use (adaptive retries, each request counted, every error translated by bot/aws/errors.py).
`AWS_ENDPOINT_URL` is honoured by boto3 itself.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from .errors import translated, translating

DEFAULT_WORKERS = 16
SESSIONS_KEPT = 4 * DEFAULT_WORKERS  # accounts whose session is kept for reuse


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


class Clients:
    """Makes every AWS client the adapters use, counting its requests in ``api_calls``, and keeps the session of
    each role (None: the bot's own) while it is among the latest used."""

    def __init__(self, session_factory: SessionFactory, max_workers: int = DEFAULT_WORKERS):
        self._session_factory = session_factory
        self._config = Config(retries={"mode": "adaptive", "max_attempts": 8},
                              max_pool_connections=max_workers + 4, connect_timeout=10, read_timeout=60)
        self._lock = threading.Lock()
        self._session_lock = threading.Lock()
        self._sessions: OrderedDict[str | None, boto3.Session] = OrderedDict()  # role ARN -> its session (LRU)
        self.api_calls = 0  # HTTP requests sent, retries included

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

    def session(self, role_arn: str | None) -> boto3.Session:
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
