"""The one owner of lifecycle policy changes: adopt, roll back, decline, snooze. The CLI, Slack, the demo
and anything later change a policy only through ``PolicyChanges``, which enforces the promises:

- **Only owners act.** The owners are the repository's owner tag as AWS has it at the moment of the change
  (ListTagsForResource just before acting), plus the admins. The decision records whom it was checked against.
- **Nothing is lost.** Every overwrite is preceded by a stored backup. Adoptions form an undo stack: each
  records the policy it replaced, each rollback restores the policy in force before the latest adoption not yet
  undone, so successive rollbacks walk back to the original, byte for byte.
- **A hand edit is never overwritten** by a rollback unless the caller forces it.
- **One change per repository at a time**, across threads and processes (a claim row in the store).

tests/test_adoption_invariants.py drives random sequences of changes, hand edits and tag changes against these.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from .aws import EcrCollector, describe_error, error_code
from .config import Settings
from .core.cost import monthly_cost, owner_tag_value, parse_owners, reachable_manifests
from .core.lifecycle import Preview, preview, same_document, same_rules, validate_policy
from .core.models import SNOOZE, Image, Manifest, PolicyDecision, RepositoryInventory, RepositoryRef
from .store import PROCESS, Store


class PolicyOperationError(Exception):
    """A policy change that was refused or failed; nothing was changed (a backup may have been kept)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class NotAnOwner(PolicyOperationError):
    """The person is neither named in the owner tag (as AWS has it now) nor an admin."""

    def __init__(self, ref: RepositoryRef, owners: tuple[str, ...]):
        super().__init__(f"only the owners or an admin can change {ref.name}; nothing was changed")
        self.ref, self.owners = ref, owners


class HandEdited(PolicyOperationError):
    """The live policy is not what the bot last put: someone edited it by hand since."""

    def __init__(self, ref: RepositoryRef, live: str | None, expected: str | None):
        super().__init__(f"the lifecycle policy of {ref.name} was changed by hand since the bot last set it; "
                         f"rolling back would overwrite that edit, so nothing was changed")
        self.ref, self.live, self.expected = ref, live, expected


@dataclass(frozen=True)
class Actor:
    """Who asks for a change. ``names_me`` tells whether an owner-tag entry (a Slack user ID or an email)
    designates this person; the CLI's actor is an admin (whoever holds the AWS credentials and the database)."""

    user_id: str
    source: str  # slack | cli
    is_admin: bool = False
    names_me: Callable[[str], bool] | None = None

    def may_change(self, owners: tuple[str, ...]) -> bool:
        return self.is_admin or (self.names_me is not None and any(self.names_me(o) for o in owners))


@dataclass(frozen=True)
class PolicyPreview:
    ref: RepositoryRef
    policy_text: str
    result: Preview
    image_count: int
    monthly_savings_usd: float
    source: str  # "latest scan" or "fresh read"

    @property
    def expiring_count(self) -> int:
        return sum(1 for d in self.result.decisions if d.action == "expire")


@dataclass(frozen=True)
class Change:
    """What a change did: the decision recorded, or None with a note when nothing needed changing."""

    decision: PolicyDecision | None
    note: str | None = None


class PolicyChanges:
    def __init__(self, collector: EcrCollector, store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._collector = collector
        self._store = store
        self._settings = settings
        self._clock = clock

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

    # -- reading ---------------------------------------------------------------------------

    def read(self, ref: RepositoryRef) -> RepositoryInventory:
        """The repository as AWS has it now."""
        try:
            return self._collector.refresh(ref)
        except (ClientError, BotoCoreError) as exc:
            raise self._read_error(ref, exc) from None

    @staticmethod
    def _read_error(ref: RepositoryRef, exc: Exception) -> PolicyOperationError:
        if error_code(exc) == "RepositoryNotFoundException":
            return PolicyOperationError(f"{ref.name} no longer exists in {ref.account_id} {ref.region}; "
                                        f"nothing was changed")
        return PolicyOperationError(f"cannot read {ref.name} in {ref.account_id} {ref.region}: "
                                    f"{describe_error(exc)}; nothing was changed")

    def preview(self, ref: RepositoryRef, policy_text: str | None = None, *, images: list[Image] | None = None,
                manifests: dict[str, Manifest] | None = None, source: str = "latest scan") -> PolicyPreview:
        """What ``policy_text`` (default: the base policy) would expire: from the images given, else a fresh read."""
        text, policy = self.checked(policy_text)
        if images is None:
            inventory = self.read(ref)
            images, manifests, source = inventory.images, inventory.manifests, "fresh read"
        elif manifests is None:
            manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
        result = preview(images, policy, self._clock(), manifests)
        return PolicyPreview(ref, text, result, len(images),
                             monthly_cost(result.bytes_freed, self._settings.price_per_gb_month), source)

    def undo_stack(self, arn: str) -> list[PolicyDecision]:
        """The adoptions not yet rolled back, oldest first: what successive rollbacks undo, newest first."""
        stack: list[PolicyDecision] = []
        for decision in self._store.decisions(arn, actions=("adopted", "rolled_back")):
            if decision.action == "adopted":
                stack.append(decision)
            elif stack:
                undone = next((d for d in stack if d.id == decision.undoes), stack[-1])
                stack.remove(undone)
        return stack

    def last_put(self, arn: str) -> PolicyDecision | None:
        """The bot's latest change of the policy (an adoption or a rollback)."""
        changes = self._store.decisions(arn, actions=("adopted", "rolled_back"))
        return changes[-1] if changes else None

    # -- changing --------------------------------------------------------------------------

    def adopt(self, ref: RepositoryRef, policy_text: str | None, actor: Actor) -> Change:
        """Backs up the policy in force, puts ``policy_text`` (default: the base policy), records the decision."""
        text, policy = self.checked(policy_text)
        with self._claimed(ref):
            owners = self._authorise(ref, actor)
            inventory = self.read(ref)  # the policy and images as they are now, not as the last scan saw them
            if inventory.lifecycle_policy is not None and same_rules(inventory.lifecycle_policy, text):
                return Change(None, f"{ref.name} already has these rules; nothing was changed")
            projected = self.preview(ref, text, images=inventory.images, manifests=inventory.manifests,
                                     source="fresh read")
            backup_id = self._store.save_backup(ref, inventory.lifecycle_policy, "before adoption")
            try:
                self._collector.put_lifecycle_policy(ref, text)
            except (ClientError, BotoCoreError) as exc:
                raise PolicyOperationError(f"AWS refused the policy for {ref.name}: {describe_error(exc)} "
                                           f"(nothing changed; backup #{backup_id} kept)") from None
            return Change(self._record(ref, "adopted", actor, owners, inventory.lifecycle_policy, text,
                                       projected.monthly_savings_usd, backup_id))

    def rollback(self, ref: RepositoryRef, actor: Actor, force: bool = False) -> Change:
        """Restores the policy in force before the latest adoption not yet undone (deletes it when there was
        none). Refuses with HandEdited when the live policy is not what the bot last put, unless ``force``."""
        with self._claimed(ref):
            owners = self._authorise(ref, actor)
            stack = self.undo_stack(ref.arn)
            if not stack:
                return Change(None, f"nothing to roll back on {ref.name}: no adoption through the bot is in force; "
                                    f"nothing was changed")
            adoption = stack[-1]
            try:
                live = self._collector.get_lifecycle_policy(ref)
            except (ClientError, BotoCoreError) as exc:
                raise self._read_error(ref, exc) from None
            expected = self.last_put(ref.arn).policy_after
            if not force and not same_document(live, expected):
                raise HandEdited(ref, live, expected)
            had_policy, restored = self._store.backup(adoption.backup_id)
            backup_id = self._store.save_backup(ref, live, "before rollback")
            try:
                if had_policy:
                    self._collector.put_lifecycle_policy(ref, restored)
                else:
                    self._collector.delete_lifecycle_policy(ref)
            except (ClientError, BotoCoreError) as exc:
                raise PolicyOperationError(f"rollback of {ref.name} failed: {describe_error(exc)} "
                                           f"(its policy is unchanged)") from None
            savings = adoption.projected_monthly_savings_usd
            return Change(self._record(ref, "rolled_back", actor, owners, live, restored if had_policy else None,
                                       None if savings is None else -savings, backup_id, undoes=adoption.id))

    def choose(self, ref: RepositoryRef, action: str, actor: Actor) -> Change:
        """A decline or a snooze: nothing changes in AWS, the choice is logged (once per snooze period)."""
        if action not in ("declined", "snoozed"):
            raise ValueError(action)
        with self._claimed(ref):
            owners = self._authorise(ref, actor)
            same = self._store.decisions(ref.arn, actions=(action,))
            if same and self._clock() - same[-1].at < SNOOZE:
                return Change(None, f"already {action} {same[-1].at:%Y-%m-%d}; nothing was changed")
            return Change(self._record(ref, action, actor, owners, None, None, None, None))

    # -- the checks ------------------------------------------------------------------------

    def _authorise(self, ref: RepositoryRef, actor: Actor) -> tuple[str, ...]:
        """The owners as AWS tags them now; raises NotAnOwner unless ``actor`` is one of them or an admin."""
        try:
            tags = self._collector.read_tags(ref)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                raise self._read_error(ref, exc) from None
            raise PolicyOperationError(f"cannot read the owner tag of {ref.name} ({describe_error(exc)}), so "
                                       f"nobody can be checked as its owner; nothing was changed") from None
        owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
        if not actor.may_change(owners):
            raise NotAnOwner(ref, owners)
        return owners

    @contextmanager
    def _claimed(self, ref: RepositoryRef) -> Iterator[None]:
        holder = f"{PROCESS}:{uuid.uuid4().hex}"
        if not self._store.claim_repository(ref.arn, holder):
            raise PolicyOperationError(f"another change to {ref.name} is in progress; nothing was changed, "
                                       f"try again in a moment")
        try:
            yield
        finally:
            self._store.release_repository(ref.arn, holder)

    def _record(self, ref, action, actor: Actor, owners, before, after, savings, backup_id,
                undoes: int | None = None) -> PolicyDecision:
        return self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, action, actor.user_id, actor.source, self._clock(),
            before, after, savings, backup_id, owners_checked=owners, undoes=undoes))

    def aws_cross_check(self, found: PolicyPreview) -> str:
        """Compares our preview with AWS's own; tolerates its absence or a lack of permission."""
        try:
            theirs = self._collector.aws_preview(found.ref, found.policy_text)
        except (ClientError, BotoCoreError, TimeoutError) as exc:
            return f"AWS preview unavailable ({describe_error(exc)}); the local evaluation stands alone"
        ours = {d.image.digest for d in found.result.decisions if d.action == "expire"}
        if ours == set(theirs):
            return f"AWS preview agrees: the same {len(ours)} images expire"
        return (f"AWS preview DIFFERS: {len(set(theirs) - ours)} images only AWS would expire, "
                f"{len(ours - set(theirs))} only the local evaluation would")
