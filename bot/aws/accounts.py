"""Which accounts the bot reads and how it enters each: its own credentials (one GetCallerIdentity), each role of
ECR_COST_ROLE_ARNS, and with ECR_COST_ORG_ROLE_NAME every ACTIVE account of the organisation entered through that
role; ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS filter them. A role is entered by assuming it: no
GetCallerIdentity per role. Also the ECR client of one repository's account and region, on demand.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import cast

import boto3

from ..core.models import RepositoryRef, ScanProblem
from ..errors import (
    AccountLeftOut,
    AwsCredentialsRefused,
    AwsNoCredentials,
    AwsNoRegion,
    EstateUnreadable,
    describe,
)
from .errors import translated
from .sessions import DEFAULT_WORKERS, Clients

logger = logging.getLogger(__name__)


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


def principal_role_arn(principal: str) -> str:
    """The IAM role behind an assumed-role session ARN (what IAM's policy simulator takes, what the pull-time
    exclusion list names); others as they are."""
    parts = principal.split(":")
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return principal


@dataclass(frozen=True)
class Account:
    """An account we entered: its session (ambient credentials or an assumed role) and regions to read."""

    account_id: str
    session: boto3.Session
    regions: tuple[str, ...]
    name: str | None = None
    problem: str | None = None  # entered, but its enabled regions could not be listed: its home region only


Plan = tuple[Account | None, list[tuple[str, str]], list[ScanProblem], list[Exception]]


class Accounts:
    """The accounts of the configured estate, entered through ``clients``' sessions."""

    def __init__(self, clients: Clients, regions: Iterable[str], role_arns: Iterable[str], *,
                 org_role_name: str | None = None, only_accounts: Iterable[str] = (),
                 exclude_accounts: Iterable[str] = (), max_workers: int = DEFAULT_WORKERS):
        self._clients = clients
        regions = tuple(regions)
        self._all_regions = regions == ("all",)
        self._regions = () if self._all_regions else regions
        self._role_arns = tuple(role_arns)
        self._org_role_name = org_role_name
        self._only = frozenset(only_accounts)
        self._exclude = frozenset(exclude_accounts)
        self._workers = max_workers
        self._lock = threading.Lock()
        self._roles: dict[str, str] = {}  # account -> the role ARN that enters it (organisation accounts)
        self._entered: dict[str, object] = {}  # account -> the session that entered it (small: credentials)
        self._own: tuple[str, str] | None = None  # (the bot's own account, its partition), once known
        self._principals: dict[str, str] = {}  # account -> the ARN the bot reads it as
        self._ecr: dict[tuple[str, str], object] = {}  # (account, region) -> its ECR client, on demand
        self.account_names: dict[str, str] = {}  # account -> its name in the organisation
        self.organisation_accounts: frozenset[str] = frozenset()  # ACTIVE accounts, once the organisation is listed
        self._organisation_id: str | None = None

    def plan(self, everywhere: bool = False, account: str | None = None) -> Plan:
        """(the bot's own account, entered: it lists the organisation; the (role ARN, account ID) of every other
        account to enter; the problems met; their causes). The others are each role of ECR_COST_ROLE_ARNS and,
        with ECR_COST_ORG_ROLE_NAME, every ACTIVE account of the organisation entered through that role;
        ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS filter them all, unless ``everywhere`` (where images may
        run: those filters narrow what is scanned, never where the bot looks for running images); ``account``: that
        account alone (no other account is entered)."""
        wanted = (lambda _: True) if everywhere else self.wanted
        if account is not None:
            configured = wanted
            wanted = lambda account_id: account_id == account and configured(account_id)  # noqa: E731
        own, own_error = self.enter(None)
        problems = [] if own is not None else [ScanProblem("current", "*", f"cannot read the current AWS identity: "
                                                                        f"{describe(cast(Exception, own_error))}")]
        entries = [(arn, arn.split(":")[4]) for arn in self._role_arns]
        if self._org_role_name and own is not None:
            found, problem = self._organisation(own)
            problems += [problem] if problem else []
            explicit = {account_id for _, account_id in entries}
            assert self._own is not None  # set by enter(None) above
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
        """Every account we can enter (see plan; ``everywhere``: whatever the account filters say), with its
        regions and name, entered concurrently; the others as problems. Raises EstateUnreadable when not one can
        be read."""
        own, entries, problems, causes = self.plan(everywhere)
        accounts = [own] if own is not None else []
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ecr-accounts") as pool:
            for (arn, account_id), (account, error) in zip(entries, pool.map(lambda e: self.enter(e[0]), entries),
                                                                 strict=True):
                if account is None:  # then error is the exception
                    causes.append(cast(Exception, error))
                    problems.append(self.unentered(arn, account_id, cast(Exception, error)))
                else:
                    accounts.append(account)
                    if account.problem:
                        problems.append(ScanProblem(account.account_id, "*", account.problem))
        if not accounts:
            raise EstateUnreadable(unreadable_cause(causes[0]) + (
                f" (and {len(causes) - 1} assumed roles failed too)" if len(causes) > 1 else ""))
        return accounts, sorted(problems, key=lambda p: (p.account_id, p.message))

    @staticmethod
    def unentered(arn: str, account_id: str, error: Exception) -> ScanProblem:
        return ScanProblem(account_id, "*", f"cannot assume {arn}: {describe(error)}")

    def wanted(self, account_id: str) -> bool:
        return (not self._only or account_id in self._only) and account_id not in self._exclude

    def enter(self, role_arn: str | None) -> tuple[Account | None, Exception | None]:
        """(the account ``role_arn`` enters, or the bot's own with None; or the error). Its regions: the
        configured ones, or with ECR_COST_REGIONS=all the ones enabled in that account."""
        try:
            session = self._clients.session(role_arn)
            home = self._regions[0] if self._regions else session.region_name or ("us-east-1" if self._all_regions
                                                                                 else None)
            if not home:
                raise AwsNoRegion("NoRegionError", "You must specify a region.", service="sts")
            if role_arn is None:  # the bot's own credentials: only STS knows whose they are
                # a regional STS endpoint: the first region scanned, never the global endpoint by default
                identity = self._clients.client(session, "sts", home).get_caller_identity()
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
                found = self._clients.client(session, "ec2", home).describe_regions()["Regions"]  # those enabled
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
            client = self._clients.client(own.session, "organizations", own.regions[0])
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

    def principal(self, account_id: str) -> str:
        """The ARN the bot reads ``account_id`` as ("" before it is entered)."""
        return self._principals.get(account_id, "")

    def session_of(self, account_id: str):
        """The session that entered ``account_id``, else the one its role gives."""
        return self._entered.get(account_id) or self._clients.session(self.role_of(account_id))

    def role_of(self, account_id: str) -> str | None:
        """The role ARN that enters ``account_id`` (None: the bot's own credentials): one of ECR_COST_ROLE_ARNS, else
        with ECR_COST_ORG_ROLE_NAME the organisation's role in any account but the bot's own."""
        explicit = next((arn for arn in self._role_arns if arn.split(":")[4] == account_id), None)
        if explicit is not None or not self._org_role_name:
            return explicit
        if account_id in self._roles:
            return self._roles[account_id]
        if self._own is None and self.enter(None)[0] is None:
            return None  # the bot's own identity cannot be read: its own credentials are all there is
        assert self._own is not None  # set by enter(None)
        own_account, partition = self._own
        return None if account_id == own_account else f"arn:{partition}:iam::{account_id}:role/{self._org_role_name}"

    def client_for(self, ref: RepositoryRef):
        """The ECR client of ``ref``'s account and region (assuming the account's role), reused. An account that
        ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS leave out is never entered, not even on demand."""
        if not self.wanted(ref.account_id):
            raise AccountLeftOut(ref.account_id)
        key = (ref.account_id, ref.region)
        with self._lock:
            client = self._ecr.get(key)
        if client is None:
            client = self._clients.client(self._clients.session(self.role_of(ref.account_id)), "ecr", ref.region)
            with self._lock:
                client = self._ecr.setdefault(key, client)
        return client

    def service_client(self, account_id: str, service: str, region: str):
        """A client of ``service`` (CloudTrail, ...) in ``account_id``, through the session that enters it."""
        if not self.wanted(account_id):
            raise AccountLeftOut(account_id)
        return self._clients.client(self._clients.session(self.role_of(account_id)), service, region)

    def organisation_id(self) -> str | None:
        """The ID of the bot's organisation (o-…), None outside one or when it cannot be read."""
        if self._organisation_id is None:
            try:
                own = self._clients.session(None)
                region = self._regions[0] if self._regions else own.region_name or "us-east-1"
                answer = self._clients.client(own, "organizations", region).describe_organization()
                self._organisation_id = answer["Organization"]["Id"]
            except Exception as exc:  # noqa: BLE001 - not in an organisation, or not allowed to ask
                logger.info("cannot read the organisation's ID: %s", describe(exc))
                return None
        return self._organisation_id
