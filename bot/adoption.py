"""Lifecycle policy operations: preview, apply (backup first), rollback, and the decision log.

Every path that changes a policy goes through here, from the CLI and from Slack alike.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from .aws import EcrCollector, describe_error
from .config import Settings
from .core.cost import monthly_cost, reachable_manifests
from .core.lifecycle import Preview, preview, validate_policy
from .core.models import Image, Manifest, PolicyDecision, RepositoryCost, RepositoryInventory, RepositoryRef
from .store import Store


class PolicyOperationError(Exception):
    """A policy change that was refused or failed; nothing was changed (a backup may have been kept)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class PolicyPreview:
    ref: RepositoryRef
    policy_text: str
    result: Preview
    image_count: int
    monthly_savings_usd: float
    source: str  # "snapshot of <time>" or "fresh read"


def ref_of(row: RepositoryCost) -> RepositoryRef:
    return RepositoryRef(row.account_id, row.region, row.repository, row.arn)


class PolicyOperations:
    def __init__(self, collector: EcrCollector, store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._collector = collector
        self._store = store
        self._settings = settings
        self._clock = clock

    @property
    def collector(self) -> EcrCollector:
        return self._collector

    @property
    def base_policy_text(self) -> str:
        return json.dumps(self._settings.base_policy, indent=2)

    def checked(self, policy_text: str | None) -> tuple[str, dict]:
        """The policy text to use (the base policy by default), validated as ECR would."""
        text = self.base_policy_text if policy_text is None else policy_text
        policy, problems = validate_policy(text)
        if problems:
            raise PolicyOperationError("ECR would reject this lifecycle policy", problems)
        return text, policy

    def _images(self, row: RepositoryCost, scan_id: int | None, fresh: bool,
                inventory: RepositoryInventory | None = None) -> tuple[list[Image], dict[str, Manifest], str]:
        """(images, manifests, where they came from): a read already made, the scan's, or a fresh read."""
        if inventory is not None:
            return inventory.images, inventory.manifests, "fresh read"
        images = None if fresh or scan_id is None else self._store.snapshot_images(scan_id, row.arn)
        if images is not None:
            manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
            return images, manifests, "latest scan"
        inventory = self._read(ref_of(row))
        return inventory.images, inventory.manifests, "fresh read"

    def _read(self, ref: RepositoryRef):
        try:
            return self._collector.refresh(ref)
        except (ClientError, BotoCoreError) as exc:
            raise PolicyOperationError(f"cannot read {ref.name} in {ref.account_id} {ref.region}: "
                                       f"{describe_error(exc)}") from None

    def preview(self, row: RepositoryCost, policy_text: str | None = None, *, scan_id: int | None = None,
                fresh: bool = False, inventory: RepositoryInventory | None = None) -> PolicyPreview:
        text, policy = self.checked(policy_text)
        images, manifests, source = self._images(row, scan_id, fresh, inventory)
        return self._preview(ref_of(row), text, policy, images, manifests, source)

    def _preview(self, ref, text, policy, images, manifests, source) -> PolicyPreview:
        result = preview(images, policy, self._clock(), manifests)
        return PolicyPreview(ref, text, result, len(images),
                             monthly_cost(result.bytes_freed, self._settings.price_per_gb_month), source)

    def apply(self, row: RepositoryCost, policy_text: str | None, user_id: str, source: str) -> PolicyDecision:
        """Backs up the current policy, puts the new one, records the decision."""
        text, policy = self.checked(policy_text)
        ref = ref_of(row)
        inventory = self._read(ref)  # the policy as it is now, not as the last scan saw it
        projected = self._preview(ref, text, policy, inventory.images, inventory.manifests, "fresh read")
        backup_id = self._store.save_backup(ref, inventory.lifecycle_policy, "before adoption")
        try:
            self._collector.put_lifecycle_policy(ref, text)
        except (ClientError, BotoCoreError) as exc:
            raise PolicyOperationError(f"AWS refused the policy for {ref.name}: {describe_error(exc)} "
                                       f"(nothing changed; backup #{backup_id} kept)") from None
        return self._record(ref, "adopted", user_id, source, inventory.lifecycle_policy, text,
                            projected.monthly_savings_usd, backup_id)

    def rollback(self, row: RepositoryCost, user_id: str, source: str) -> PolicyDecision:
        """Restores exactly the policy the last adoption replaced (deletes it when there was none)."""
        ref = ref_of(row)
        history = self._store.decisions(row.arn, actions=("adopted", "rolled_back"))
        if not history or history[-1].action != "adopted":
            what = "was already rolled back" if history else "was never adopted through the bot"
            raise PolicyOperationError(f"nothing to roll back for {ref.name}: its lifecycle policy {what}")
        adoption = history[-1]
        had_policy, restored = self._store.backup(adoption.backup_id)
        try:
            current = self._collector.get_lifecycle_policy(ref)
            backup_id = self._store.save_backup(ref, current, "before rollback")
            if had_policy:
                self._collector.put_lifecycle_policy(ref, restored)
            else:
                self._collector.delete_lifecycle_policy(ref)
        except (ClientError, BotoCoreError) as exc:
            raise PolicyOperationError(f"rollback of {ref.name} failed: {describe_error(exc)} "
                                       f"(its policy is unchanged)") from None
        savings = adoption.projected_monthly_savings_usd
        return self._record(ref, "rolled_back", user_id, source, current, restored if had_policy else None,
                            None if savings is None else -savings, backup_id)

    def record_choice(self, row: RepositoryCost, action: str, user_id: str, source: str) -> PolicyDecision:
        """A decline or a snooze: nothing changes in AWS, the choice is logged."""
        if action not in ("declined", "snoozed"):
            raise ValueError(action)
        return self._record(ref_of(row), action, user_id, source, row.lifecycle_policy, row.lifecycle_policy,
                            None, None)

    def _record(self, ref, action, user_id, source, before, after, savings, backup_id) -> PolicyDecision:
        return self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, action, user_id, source, self._clock(),
            before, after, savings, backup_id))

    def aws_cross_check(self, found: PolicyPreview) -> str:
        """Compares our preview with AWS's own; tolerates its absence or a lack of permission."""
        try:
            theirs = self._collector.aws_preview(found.ref, found.policy_text)
        except (ClientError, BotoCoreError, TimeoutError) as exc:
            return f"AWS preview unavailable ({_short(exc)}); the local evaluation stands alone"
        ours = {d.image.digest for d in found.result.decisions if d.action == "expire"}
        if ours == set(theirs):
            return f"AWS preview agrees: the same {len(ours)} images expire"
        return (f"AWS preview DIFFERS: {len(set(theirs) - ours)} images only AWS would expire, "
                f"{len(ours - set(theirs))} only the local evaluation would")


def _short(exc: Exception) -> str:
    return describe_error(exc) if isinstance(exc, (ClientError, BotoCoreError)) else str(exc)
