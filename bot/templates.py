"""A default lifecycle policy for new repositories: ECR's repository creation templates. Lists each account and
region's templates and whether one gives a lifecycle policy to repositories created by pull-through cache,
replication and create-on-push; applies the base policy (its protected form) as the ``ROOT`` template's lifecycle
policy, backing up the template first, recording the decision; undoes it. Admins only. A plain CreateRepository
gets no template: the watch catches those repositories.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .adoption import compact
from .aws.repository_creation import APPLIED_FOR, ROOT, CreationTemplate, Registry
from .config import Settings
from .core.inuse import protected
from .core.lifecycle import same_document
from .core.models import PolicyDecision, RepositoryRef, ScanProblem
from .errors import NotAnAdmin, RegistryError
from .gate import Actor
from .store import PROCESS, Store

APPLIED, UNDONE = "template_applied", "template_rolled_back"


def template_key(account_id: str, region: str, prefix: str = ROOT) -> str:
    """How the decision log and the backups name a template (it has no ARN of its own)."""
    return f"ecr-template:{account_id}:{region}:{prefix}"


@dataclass(frozen=True)
class Place:
    """One account and region: its templates, or why they could not be read."""

    account_id: str
    region: str
    templates: tuple[CreationTemplate, ...] = ()
    error: str | None = None

    def covering(self, applied_for: str) -> str | None:
        """The prefix of the template that gives repositories created this way a lifecycle policy (ROOT, else the
        first with one), or None."""
        found = [t.prefix for t in self.templates if applied_for in t.applied_for and t.lifecycle_policy]
        return ROOT if ROOT in found else (found[0] if found else None)


@dataclass
class Listing:
    places: list[Place] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateChange:
    account_id: str
    region: str
    outcome: str  # created | updated | unchanged | restored | deleted | refused | failed
    message: str
    decision: PolicyDecision | None = None


class TemplateService:
    def __init__(self, registry: Registry, store: Store, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._registry, self._store, self._settings, self._clock = registry, store, settings, clock

    def policy_text(self) -> str:
        """The base policy in its protected form (the bot's pins kept), as the ROOT template's lifecycle policy."""
        return compact(protected(self._settings.base_policy))

    def listing(self) -> Listing:
        places, problems = self._registry.places()
        found = Listing(problems=problems)
        for account_id, region in places:
            try:
                found.places.append(Place(account_id, region, tuple(self._registry.templates(account_id, region))))
            except RegistryError as exc:
                found.places.append(Place(account_id, region, error=str(exc)))
        return found

    def apply(self, actor: Actor) -> list[TemplateChange]:
        """Creates or updates the ROOT template of every account and region: the base policy for repositories created
        by pull-through cache, replication and create-on-push. Each place on its own: one that fails stops none."""
        if not actor.is_admin:
            raise NotAnAdmin("set the default policy for new repositories")
        return [self._in_place(p, actor, self._apply) for p in self.listing().places]

    def rollback(self, actor: Actor) -> list[TemplateChange]:
        """Undoes the latest apply in every account and region where one is in force."""
        if not actor.is_admin:
            raise NotAnAdmin("undo the default policy for new repositories")
        return [self._in_place(p, actor, self._rollback) for p in self.listing().places
                if p.error is not None or self.undo_stack(p.account_id, p.region)]

    def undo_stack(self, account_id: str, region: str) -> list[PolicyDecision]:
        stack: list[PolicyDecision] = []
        for decision in self._store.decisions(template_key(account_id, region), actions=(APPLIED, UNDONE)):
            if decision.action == APPLIED:
                stack.append(decision)
            else:
                stack = [d for d in stack if d.id != decision.undoes]
        return stack

    def _in_place(self, place: Place, actor: Actor, change) -> TemplateChange:
        if place.error is not None:
            return TemplateChange(place.account_id, place.region, "failed", place.error)
        key, holder = template_key(place.account_id, place.region), f"{PROCESS}:{uuid.uuid4().hex}"
        if not self._store.claim(key, holder):
            return TemplateChange(place.account_id, place.region, "refused",
                                  "another change to this template is in progress; try again in a moment")
        try:
            return change(place, actor)
        except RegistryError as exc:
            return TemplateChange(place.account_id, place.region, "failed", f"{exc}; nothing was changed")
        finally:
            self._store.release_claim(key, holder)

    def _record(self, place: Place, action: str, actor: Actor, before: str | None, after: str | None,
                backup_id: int | None, note: str, undoes: int | None = None) -> PolicyDecision:
        return self._store.record_decision(PolicyDecision(
            None, f"{ROOT} template", place.account_id, place.region, template_key(place.account_id, place.region),
            action, actor.user_id, actor.source, self._clock(), before, after, None, backup_id, undoes=undoes,
            note=note))

    def _apply(self, place: Place, actor: Actor) -> TemplateChange:
        text = self.policy_text()
        root = next((t for t in place.templates if t.prefix == ROOT), None)
        applied_for = sorted(set(APPLIED_FOR) | set(root.applied_for if root else ()))
        if root is not None and same_document(root.lifecycle_policy, text) \
                and set(APPLIED_FOR) <= set(root.applied_for):
            return TemplateChange(place.account_id, place.region, "unchanged",
                                  "the ROOT template already gives new repositories the base policy")
        ref = RepositoryRef(place.account_id, place.region, ROOT, template_key(place.account_id, place.region))
        backup_id = self._store.save_backup(ref, root.document if root else None, "before template apply")
        fields = (root.fields() if root else {"description": "ecr-cost-bot: the base lifecycle policy for new "
                                                             "repositories"})
        fields.update(lifecyclePolicy=text, appliedFor=applied_for)
        decision = self._record(place, APPLIED, actor, root.lifecycle_policy if root else None, text, backup_id,
                                "ROOT template " + ("updated" if root else "created") + f" (backup #{backup_id})")
        try:
            self._registry.put_template(place.account_id, place.region, ROOT, fields, exists=root is not None)
        except RegistryError:
            assert decision.id is not None  # recorded
            self._store.withdraw_decision(decision.id)
            raise
        outcome = "updated" if root else "created"
        return TemplateChange(place.account_id, place.region, outcome,
                              f"ROOT template {outcome}: new repositories created by {', '.join(APPLIED_FOR)} get the "
                              f"base policy (backup #{backup_id})", decision)

    def _rollback(self, place: Place, actor: Actor) -> TemplateChange:
        stack = self.undo_stack(place.account_id, place.region)
        if not stack:
            return TemplateChange(place.account_id, place.region, "unchanged", "nothing to undo")
        last = stack[-1]
        root = next((t for t in place.templates if t.prefix == ROOT), None)
        if root is None or not same_document(root.lifecycle_policy, last.policy_after):
            return TemplateChange(place.account_id, place.region, "refused",
                                  "the ROOT template was changed or deleted since the bot applied it; change it in "
                                  "the ECR console instead. Nothing was changed")
        assert last.backup_id is not None  # every template change backs up first
        had, document = self._store.backup(last.backup_id)
        ref = RepositoryRef(place.account_id, place.region, ROOT, template_key(place.account_id, place.region))
        backup_id = self._store.save_backup(ref, root.document, "before template rollback")
        earlier = json.loads(document) if had and document else None
        restored = (earlier or {}).get("lifecyclePolicy") or None
        decision = self._record(place, UNDONE, actor, root.lifecycle_policy, restored, backup_id,
                                "ROOT template " + ("restored" if earlier else "deleted"), undoes=last.id)
        try:
            if earlier is None:
                self._registry.delete_template(place.account_id, place.region, ROOT)
            elif restored is None:  # an update cannot remove a lifecycle policy: the template is put back whole
                self._registry.delete_template(place.account_id, place.region, ROOT)
                self._registry.put_template(place.account_id, place.region, ROOT, _fields(earlier), exists=False)
            else:
                self._registry.put_template(place.account_id, place.region, ROOT, _fields(earlier), exists=True)
        except RegistryError:
            assert decision.id is not None  # recorded
            self._store.withdraw_decision(decision.id)
            raise
        if earlier is None:
            return TemplateChange(place.account_id, place.region, "deleted",
                                  "ROOT template deleted: there was none before", decision)
        return TemplateChange(place.account_id, place.region, "restored",
                              "ROOT template restored as it was before", decision)


def _fields(document: dict) -> dict:
    return CreationTemplate("", "", ROOT, (), None, json.dumps(document)).fields()
