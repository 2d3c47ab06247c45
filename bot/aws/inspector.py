"""Amazon Inspector as a further in-use source: with enhanced scanning on, Inspector2 ``ListCoverage`` tells, per
ECR image, when it was last in use (``lastInUseAt``) and by how many (``inUseCount``) ECS tasks and EKS pods,
across the accounts of its delegated administrator: including accounts whose runtimes the bot cannot read.

Optional: Inspector not enabled, AccessDenied, or any failure after the client's retries (throttling is
retried) means it is simply not a source, never a partial check. Returns core references.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from ..core.inuse import ImageRef, Reference, Usage
from ..errors import describe
from .accounts import Account
from .ecr import EcrCollector

logger = logging.getLogger(__name__)
IN_USE_WINDOW = timedelta(days=1)  # an image Inspector saw in use within this long counts as in use
_IMAGE_ARN = re.compile(r"^arn:[\w-]+:ecr:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):repository/"
                        r"(?P<repository>.+)/(?P<digest>sha256:[0-9a-f]{64})$")


def inspector_references(collector: EcrCollector, accounts: Iterable[Account], now: datetime | None = None,
                         max_workers: int = 8) -> list[Reference]:
    """The images Inspector saw in use within IN_USE_WINDOW, as seen from each account and region the bot
    entered (a delegated administrator sees its members'), each image once."""
    now = now or datetime.now(UTC)
    jobs = [(account, region) for account in accounts for region in account.regions]
    found: dict[tuple[str | None, str], Reference] = {}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="inspector") as pool:
        for references in pool.map(lambda job: _read(collector, job[0], job[1], now), jobs):
            for reference in references:
                found.setdefault((reference.image.digest, reference.usage.account_id), reference)
    return list(found.values())


def _read(collector: EcrCollector, account: Account, region: str, now: datetime) -> list[Reference]:
    since = now - IN_USE_WINDOW
    try:
        client = collector.client(account.session, "inspector2", region)
        pages = client.get_paginator("list_coverage").paginate(filterCriteria={
            "resourceType": [{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}],
            "ecrImageLastInUseAt": [{"startInclusive": since}]})
        resources = [r for page in pages for r in page.get("coveredResources", [])]
    except Exception as exc:  # noqa: BLE001 - not enabled, not allowed, failing: not a source
        logger.info("Amazon Inspector is not an in-use source in %s %s: %s", account.account_id, region,
                    describe(exc))
        return []
    references = []
    for resource in resources:
        image = (resource.get("resourceMetadata") or {}).get("ecrImage") or {}
        last, count = image.get("lastInUseAt"), image.get("inUseCount") or 0
        match = _IMAGE_ARN.match(resource.get("resourceId") or "")
        if match is None or not isinstance(last, datetime) or last.astimezone(UTC) < since:
            continue
        where = resource.get("accountId") or account.account_id
        references.append(Reference(
            ImageRef(match["account"], match["region"], match["repository"], None, match["digest"]),
            Usage("inspector", f"{count} in use, last seen {last.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                  where, match["region"])))
    return references
