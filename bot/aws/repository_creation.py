"""The AWS adapter for the registry-wide settings the watch needs: ECR repository creation templates, and who
created a repository (CloudTrail LookupEvents). Its clients raise the AwsError family (bot/aws/errors.py); each
becomes a ``RegistryError`` here, with one line naming the cause and the fix.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from ..core.models import ScanProblem
from ..errors import AwsAccessDenied, AwsError, RegistryError, describe
from .ecr import EcrCollector

logger = logging.getLogger(__name__)
APPLIED_FOR = ("PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH")  # how a template can create a repository
ROOT = "ROOT"  # the template that applies to every repository no other template's prefix matches
TEMPLATE_FIELDS = ("description", "encryptionConfiguration", "resourceTags", "imageTagMutability",
                   "imageTagMutabilityExclusionFilters", "repositoryPolicy", "lifecyclePolicy", "appliedFor",
                   "customRoleArn")


@dataclass(frozen=True)
class CreationTemplate:
    account_id: str
    region: str
    prefix: str
    applied_for: tuple[str, ...]
    lifecycle_policy: str | None
    document: str  # the template as AWS describes it (JSON): what a backup keeps, what an undo restores

    def fields(self) -> dict:
        """The template's settings as Create/UpdateRepositoryCreationTemplate take them."""
        found = json.loads(self.document)
        return {k: found[k] for k in TEMPLATE_FIELDS if found.get(k) not in (None, "", [], {})}


def _translated(exc: AwsError, what: str, action: str) -> RegistryError:
    if isinstance(exc, AwsAccessDenied):
        return RegistryError(f"{what}: access denied; grant {action} to the bot's role (docs/watch.md, IAM)")
    return RegistryError(f"{what}: {describe(exc)}")


def _template(account_id: str, region: str, found: dict) -> CreationTemplate:
    clean = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in found.items()}
    return CreationTemplate(account_id, region, found["prefix"], tuple(found.get("appliedFor") or ()),
                            found.get("lifecyclePolicy") or None, json.dumps(clean, sort_keys=True))


class Registry:
    def __init__(self, collector: EcrCollector):
        self._collector = collector

    def places(self) -> tuple[list[tuple[str, str]], list[ScanProblem]]:
        """Every (account, region) the bot reads, and the accounts it cannot enter."""
        accounts, problems = self._collector.accounts()
        return [(a.account_id, r) for a in accounts for r in a.regions], problems

    def templates(self, account_id: str, region: str) -> list[CreationTemplate]:
        try:
            client = self._collector.service_client(account_id, "ecr", region)
            found, token = [], None
            while True:
                page = client.describe_repository_creation_templates(
                    **({"nextToken": token} if token else {}), maxResults=1000)
                found += [_template(account_id, region, t) for t in page.get("repositoryCreationTemplates", [])]
                token = page.get("nextToken")
                if not token:
                    return found
        except AwsError as exc:
            raise _translated(exc, f"cannot list the repository creation templates of {account_id} {region}",
                              "ecr:DescribeRepositoryCreationTemplates") from None

    def put_template(self, account_id: str, region: str, prefix: str, fields: dict, exists: bool) -> None:
        """Creates the template, or updates the one there (``exists``)."""
        action = "UpdateRepositoryCreationTemplate" if exists else "CreateRepositoryCreationTemplate"
        try:
            client = self._collector.service_client(account_id, "ecr", region)
            if exists:
                client.update_repository_creation_template(prefix=prefix, **fields)
            else:
                client.create_repository_creation_template(prefix=prefix, **fields)
        except AwsError as exc:
            raise _translated(exc, f"cannot {'update' if exists else 'create'} the {prefix} template of {account_id} "
                                   f"{region}", f"ecr:{action}") from None

    def delete_template(self, account_id: str, region: str, prefix: str) -> None:
        try:
            client = self._collector.service_client(account_id, "ecr", region)
            client.delete_repository_creation_template(prefix=prefix)
        except AwsError as exc:
            if exc.code == "TemplateNotFoundException":
                return  # already gone: what was asked for
            raise _translated(exc, f"cannot delete the {prefix} template of {account_id} {region}",
                              "ecr:DeleteRepositoryCreationTemplate") from None

    def creators(self, account_id: str, region: str, start: datetime, end: datetime) -> dict[str, str]:
        """Repository name -> who created it (the caller's ARN), from CloudTrail's CreateRepository events between
        ``start`` and ``end``. Raises RegistryError when CloudTrail cannot be read."""
        found: dict[str, str] = {}
        try:
            client = self._collector.service_client(account_id, "cloudtrail", region)
            pages = client.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateRepository"}],
                StartTime=start, EndTime=end)
            for page in pages:
                for event in page.get("Events", []):
                    try:
                        detail = json.loads(event.get("CloudTrailEvent") or "{}")
                    except ValueError:
                        continue
                    name = (detail.get("requestParameters") or {}).get("repositoryName")
                    who = (detail.get("userIdentity") or {}).get("arn") or event.get("Username")
                    if isinstance(name, str) and isinstance(who, str) \
                            and event.get("EventSource", "ecr.amazonaws.com") == "ecr.amazonaws.com":
                        found.setdefault(name, who)
        except AwsError as exc:
            raise _translated(exc, f"cannot read CloudTrail in {account_id} {region}", "cloudtrail:LookupEvents") \
                from None
        return found
