"""The gate every change to a repository passes (a policy change, a deletion, an ownership claim, a tag set for an
owner): one change per repository at a time, the repository and its owners as AWS has them at this moment, and the
decision recorded with whom it was checked against. ``PolicyChanges``, ``RepositoryDeletion``, ``OwnershipClaims``
and ``TagChanges`` share it, so who may act is decided in one place.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from .aws.ecr import EcrCollector
from .config import Settings
from .core.cost import owner_tag_value, parse_owners
from .core.models import PolicyDecision, RepositoryInventory, RepositoryRef
from .errors import AwsError, NotAnOwner, PolicyOperationError, describe
from .heartbeat import heartbeat
from .store import HEARTBEAT_SECONDS, PROCESS, Store


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
class Change:
    """What a change did: the decision recorded, or None with a note when nothing needed changing."""

    decision: PolicyDecision | None
    note: str | None = None


class Gate:
    def __init__(self, collector: EcrCollector, store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._collector = collector
        self._store = store
        self._settings = settings
        self._clock = clock

    def claimed(self, ref: RepositoryRef):
        """One change per repository at a time, across threads and processes."""
        return claimed(self._store, ref)

    def live_inventory(self, ref: RepositoryRef) -> RepositoryInventory:
        """The repository as AWS has it now (its policy, tags and images)."""
        try:
            return self._collector.refresh(ref)
        except AwsError as exc:
            raise read_error(ref, exc) from None

    def live_tags(self, ref: RepositoryRef) -> tuple[dict[str, str], datetime | None]:
        """(the repository's tags as AWS has them now, when it was created)."""
        try:
            born = self._collector.created_at(ref)
            return self._collector.read_tags(ref), born
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                raise read_error(ref, exc) from None
            raise PolicyOperationError(f"cannot read the owner tag of {ref.name} ({describe(exc)}), so nobody "
                                       f"can be checked as its owner; nothing was changed") from None

    def owners(self, tags: dict[str, str]) -> tuple[str, ...]:
        """The owners the owner tag (ECR_COST_OWNER_TAG) of ``tags`` names."""
        owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
        return owners

    def authorise(self, ref: RepositoryRef, actor: Actor) -> tuple[tuple[str, ...], datetime | None]:
        """(the owners as AWS tags them now, when the repository was created); raises NotAnOwner unless
        ``actor`` is one of the owners or an admin. The creation time keeps a re-created repository's history
        apart from the deleted one's."""
        _, owners, born = self.authorised_tags(ref, actor)
        return owners, born

    def authorised_tags(self, ref: RepositoryRef,
                        actor: Actor) -> tuple[dict[str, str], tuple[str, ...], datetime | None]:
        """As ``authorise``, with the live tags it read."""
        tags, born = self.live_tags(ref)
        owners = self.owners(tags)
        if not actor.may_change(owners):
            raise NotAnOwner(ref, owners)
        return tags, owners, born

    def record(self, ref: RepositoryRef, action: str, actor: Actor, owners: tuple[str, ...], before: str | None,
               after: str | None, savings: float | None, backup_id: int | None, undoes: int | None = None,
               born: datetime | None = None, reason: str | None = None, note: str | None = None,
               tag_before: str | None = None, tag_after: str | None = None) -> PolicyDecision:
        """The decision logged (before AWS is asked: a change AWS made is never missing from the log)."""
        return self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, action, actor.user_id, actor.source, self._clock(),
            before, after, savings, backup_id, owners_checked=owners, undoes=undoes,
            repository_created_at=born, reason=reason, note=note, tag_before=tag_before, tag_after=tag_after))

    def withdraw(self, decision: PolicyDecision) -> None:
        """A decision whose change AWS surely did not make."""
        assert decision.id is not None  # recorded
        self._store.withdraw_decision(decision.id)


def read_error(ref: RepositoryRef, exc: AwsError) -> PolicyOperationError:
    """What a person reads when the repository cannot be read before a change."""
    if exc.code == "RepositoryNotFoundException":
        return PolicyOperationError(f"{ref.name} no longer exists in {ref.account_id} {ref.region}; "
                                    f"nothing was changed")
    return PolicyOperationError(f"cannot read {ref.name} in {ref.account_id} {ref.region}: "
                                f"{describe(exc)}; nothing was changed")


@contextmanager
def claimed(store: Store, ref: RepositoryRef) -> Iterator[None]:
    """One change per repository at a time (a policy change, a sweep), across threads and processes; kept alive
    while it lasts (reading a large repository takes a while)."""
    holder = f"{PROCESS}:{uuid.uuid4().hex}"
    if not store.claim(ref.arn, holder):
        raise PolicyOperationError(f"another change to {ref.name} is in progress; nothing was changed, "
                                   f"try again in a moment")
    try:
        with heartbeat(lambda: store.refresh_claim(ref.arn, holder), HEARTBEAT_SECONDS, "change-claim"):
            yield
    finally:
        store.release_claim(ref.arn, holder)
