"""Ownership claims: a person asks to own a repository whose owner tag names nobody; an admin approves (the owner
tag is set to the claimer) or rejects it, each claim decided once. Who may act: ``Gate``; the tag: ``TagChanges``.
"""
from __future__ import annotations

from .core.models import RepositoryRef
from .errors import HasOwners, NotAnAdmin, PolicyOperationError, describe
from .gate import Actor, Change, Gate
from .store import Store
from .tags import TagChanges


class OwnershipClaims:
    def __init__(self, gate: Gate, tags: TagChanges, store: Store, owner_tag: str):
        self._gate = gate
        self._tags = tags
        self._store = store
        self._owner_tag = owner_tag

    def claim_ownership(self, ref: RepositoryRef, claimer: str) -> tuple[int, bool]:
        """A person asks to own a repository whose owner tag (as AWS has it now) names nobody: (the claim's id,
        whether it is new). An admin approves or rejects it (decide_claim)."""
        tags, _ = self._gate.live_tags(ref)
        owners = self._gate.owners(tags)
        if owners:
            raise HasOwners(ref, owners)
        return self._store.add_ownership_claim(ref, claimer)

    def claim_of(self, claim_id: int) -> tuple[RepositoryRef, str, str]:
        """(the repository, the claimer, the claim's status)."""
        claim = self._store.ownership_claim(claim_id)
        if claim is None:
            raise PolicyOperationError("no such ownership claim; nothing was changed")
        return (RepositoryRef(claim["account_id"], claim["region"], claim["repository"], claim["arn"]),
                claim["claimer"], claim["status"])

    def decide_claim(self, claim_id: int, approve: bool, actor: Actor) -> Change:
        """An admin approves (the owner tag is set to the claimer) or rejects a claim; each claim is decided once."""
        ref, claimer, status = self.claim_of(claim_id)
        if not actor.is_admin:
            raise NotAnAdmin(f"decide who owns {ref.name}")
        if status != "pending":
            return Change(None, f"this claim on {ref.name} was already {status}; nothing was changed")
        with self._gate.claimed(ref):
            if not approve:  # nothing changes in AWS: a repository deleted since can still be rejected
                if not self._store.decide_ownership_claim(claim_id, "rejected", actor.user_id):
                    return Change(None, f"this claim on {ref.name} was already decided; nothing was changed")
                return Change(self._gate.record(ref, "claim_rejected", actor, (), None, None, None, None,
                                                note=f"claimed by {claimer}"))
            return self._approve(ref, claim_id, claimer, actor)

    def _approve(self, ref: RepositoryRef, claim_id: int, claimer: str, actor: Actor) -> Change:
        tags, born = self._gate.live_tags(ref)
        key = self._owner_tag
        owners = self._gate.owners(tags)
        if owners:
            if self._store.decide_ownership_claim(claim_id, "superseded", actor.user_id):
                self._gate.record(ref, "claim_rejected", actor, owners, None, None, None, None, born=born,
                                  note=f"claimed by {claimer}; owners were tagged meanwhile")
            raise HasOwners(ref, owners)
        if not self._store.decide_ownership_claim(claim_id, "approved", actor.user_id):
            return Change(None, f"this claim on {ref.name} was already decided; nothing was changed")
        before = f" (it was {tags[key]!r})" if key in tags else ""
        decision = self._gate.record(ref, "claimed", actor, (), None, None, None, None, born=born,
                                     note=f"owner tag {key}={claimer}{before}, claimed by {claimer}")
        error = self._tags.put_tag(ref, key, claimer, decision)
        if error is not None:
            self._store.decide_ownership_claim(claim_id, "pending", actor.user_id, only_from="approved")
            raise PolicyOperationError(f"AWS refused to tag {ref.name}: {describe(error)}; nothing was "
                                       f"changed, the claim is still pending") from None
        return Change(decision)
