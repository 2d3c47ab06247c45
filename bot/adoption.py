"""The one owner of lifecycle policy changes: adopt (the base policy, a tuned one, or the repository's own policy
protected), roll back, the guard's pins, decline, snooze, lift an exemption. The CLI, Slack, the demo and anything
later change a policy only through ``PolicyChanges``, which enforces the promises:

- **Only owners act.** The owners are the repository's owner tag as AWS has it at the moment of the change
  (ListTagsForResource just before acting), plus the admins (``Gate``, bot/gate.py). The decision records whom it
  was checked against.
- **Nothing is lost.** Every overwrite is preceded by a stored backup. Adoptions form an undo stack: each
  records the policy it replaced, each rollback restores the policy in force before the latest adoption not yet
  undone, so successive rollbacks walk back to the original, byte for byte.
- **A hand edit is never overwritten** by a rollback unless the caller forces it.
- **Nothing in use is expired.** Every policy put passes one safety check (``_final_check``) on the live images.
- **One change per repository at a time**, across threads and processes (a claim row in the store).

Deleting a repository (bot/deletion.py), ownership claims (bot/claims.py) and tags set for owners (bot/tags.py)
pass the same gate but change no policy. tests/test_adoption_invariants.py drives random sequences of changes,
hand edits and tag changes against these.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from .aws.ecr import EcrCollector
from .config import Settings
from .core.analysis import exemption_of
from .core.cost import monthly_cost, reachable_manifests
from .core.inuse import (
    RISKY_ACTIONS,
    InUseSet,
    PinPlan,
    Usage,
    after_plan,
    harmed,
    pin_tag,
    plan_pins,
    protected,
    unprotected,
)
from .core.lifecycle import Preview, fingerprint, preview, same_document, same_rules, validate_policy
from .core.models import (
    ADOPTIONS,
    EXEMPT_TAG,
    EXEMPTION_REASONS,
    SNOOZE,
    Image,
    Manifest,
    PolicyDecision,
    PolicySavings,
    RepositoryRef,
)
from .errors import (
    AwsError,
    HandEdited,
    HarmsInUse,
    InUsePartial,
    NotAnAdmin,
    PolicyOperationError,
    describe,
)
from .gate import Actor, Change, Gate
from .store import Store
from .usage import InUseFinder


@dataclass(frozen=True)
class PolicyPreview:
    """What a policy as written would do, and what its adopted (protected) form would: in-use images kept."""

    ref: RepositoryRef
    policy_text: str
    result: Preview  # the policy as written
    image_count: int
    monthly_savings_usd: float
    source: str  # "latest scan" or "fresh read"
    images: tuple[Image, ...] = ()
    in_use: InUseSet | None = None  # None: not checked
    adopted: Preview | None = None  # the protected form, with every in-use image pinned
    adopted_savings_usd: float | None = None

    @property
    def expiring_count(self) -> int:
        return sum(1 for d in self.result.decisions if d.action == "expire")

    @property
    def used(self) -> dict[str, list[Usage]]:
        return {} if self.in_use is None else self.in_use.of(self.ref.account_id, self.ref.region, self.ref.name)

    @property
    def savings(self) -> PolicySavings:
        """What adopting does (the protected form) beside what the policy as written would: the one place these
        figures are computed for every surface."""
        adopted = self.adopted or self.result
        used = self.used
        expiring = [d.image.digest for d in self.result.decisions if d.action == "expire"]
        return PolicySavings(
            image_count=self.image_count,
            expiring_count=sum(1 for d in adopted.decisions if d.action == "expire"),
            bytes_freed=adopted.bytes_freed,
            monthly_usd=self.monthly_savings_usd if self.adopted is None else (self.adopted_savings_usd or 0.0),
            written_expiring_count=len(expiring), written_in_use_expiring=sum(1 for d in expiring if d in used),
            written_bytes_freed=self.result.bytes_freed, written_monthly_usd=self.monthly_savings_usd,
            in_use_checked=self.adopted is not None)

    @property
    def in_use_expiring(self) -> list[str]:
        """In-use digests the policy as written would expire or archive (the bot keeps them)."""
        used = self.used
        return [d.image.digest for d in self.result.decisions if d.action in RISKY_ACTIONS and d.image.digest in used]


class PolicyChanges:
    def __init__(self, collector: EcrCollector, gate: Gate, store: Store, settings: Settings, in_use: InUseFinder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._collector = collector
        self._gate = gate
        self._store = store
        self._settings = settings
        self._in_use = in_use
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
        assert policy is not None  # no problems: a policy
        return text, policy

    def project(self, ref: RepositoryRef, policy_text: str | None = None, *, images: list[Image] | None = None,
                manifests: dict[str, Manifest] | None = None, source: str = "latest scan",
                with_in_use: bool = True, who_may_pull: bool = False) -> PolicyPreview:
        """What ``policy_text`` (default: the base policy) would expire as written, and (``with_in_use``) what
        its adopted form would, every in-use image kept: from the images given, else a fresh read."""
        text, policy = self.checked(policy_text)
        if images is None:
            inventory = self._gate.live_inventory(ref)
            images, manifests, source = inventory.images, inventory.manifests, "fresh read"
        elif manifests is None:
            manifests = reachable_manifests((i.digest for i in images), self._store.get_manifests)
        now, price = self._clock(), self._settings.price_per_gb_month
        result = preview(images, policy, now, manifests)
        found = PolicyPreview(ref, text, result, len(images), monthly_cost(result.bytes_freed, price), source,
                              tuple(images))
        if not with_in_use:
            return found
        in_use = self._in_use.repository(ref, images, manifests, who_may_pull=who_may_pull)
        used = in_use.of(ref.account_id, ref.region, ref.name)
        guarded = self._protected(policy)
        plan = plan_pins(images, used, guarded, now, manifests)
        adopted = preview(after_plan(images, plan), guarded, now, manifests)
        return PolicyPreview(ref, text, result, len(images), found.monthly_savings_usd, source, tuple(images),
                             in_use, adopted, monthly_cost(adopted.bytes_freed, price))

    @staticmethod
    def _protected(policy: dict) -> dict:
        try:
            return protected(policy)
        except ValueError as exc:
            raise PolicyOperationError(str(exc)) from None

    def _history(self, arn: str, born: datetime | None) -> list[PolicyDecision]:
        """Adoptions and rollbacks of this repository, not of an earlier one deleted under the same name."""
        return [d for d in self._store.decisions(arn, actions=(*ADOPTIONS, "rolled_back"))
                if born is None or d.repository_created_at is None or d.repository_created_at == born]

    def undo_stack(self, arn: str, born: datetime | None = None) -> list[PolicyDecision]:
        """The adoptions not yet rolled back, oldest first: what successive rollbacks undo, newest first."""
        stack: list[PolicyDecision] = []
        for decision in self._history(arn, born):
            if decision.action in ADOPTIONS:
                stack.append(decision)
            elif stack:
                undone = next((d for d in stack if d.id == decision.undoes), stack[-1])
                stack.remove(undone)
        return stack

    def last_put(self, arn: str, born: datetime | None = None) -> PolicyDecision | None:
        """The bot's latest change of the policy (an adoption or a rollback)."""
        changes = self._history(arn, born)
        return changes[-1] if changes else None

    # -- changing --------------------------------------------------------------------------

    def adopt(self, ref: RepositoryRef, policy_text: str | None, actor: Actor, current: bool = False,
              despite_partial: bool = False, tuned: bool = False, despite_in_use: bool = False) -> Change:
        """Backs up the policy in force, puts ``policy_text`` (default: the base policy; with ``current``, the
        repository's own policy as it is now) in its protected form, records the decision ("tuned" when an owner
        tuned the base policy). Refuses with InUsePartial when some runtime could not be read, unless
        ``despite_partial``; with HarmsInUse when the policy about to be put, evaluated on the live images with
        their pins, would still expire or archive an in-use image, unless ``despite_in_use``."""
        text, policy = (None, None) if current else self.checked(policy_text)
        with self._gate.claimed(ref):
            owners, born = self._gate.authorise(ref, actor)
            # the policy and images as they are now, not as the last scan saw them
            inventory = self._gate.live_inventory(ref)
            if current:
                if inventory.lifecycle_policy is None:
                    return Change(None, f"{ref.name} has no lifecycle policy: nothing expires, nothing to protect")
                text, policy = self.checked(compact(unprotected(json.loads(inventory.lifecycle_policy))))
            assert policy is not None  # checked above, or just now
            projected = self.project(ref, text, images=inventory.images, manifests=inventory.manifests,
                                     source="fresh read", who_may_pull=True)
            assert projected.in_use is not None  # previews with the in-use check by default
            if projected.in_use.partial and not despite_partial:
                raise InUsePartial(ref, [f"{p.source} in {p.account_id} {p.region}: {p.message}"
                                         for p in projected.in_use.problems])
            guarded_text, _ = self.checked(compact(self._protected(policy)))  # within ECR's limits, before any pin
            # pins first: the policy never meets an in-use image without its pin
            plan = plan_pins(inventory.images, projected.used, json.loads(guarded_text), self._clock(),
                             inventory.manifests)
            self._apply_pins(ref, plan, release=False)
            # the pins as AWS has them now
            live = self._gate.live_inventory(ref).images if plan.pin else inventory.images
            risks = self._final_check(ref, "adopting this policy", json.loads(guarded_text), live,
                                      inventory.manifests, projected.used, force=despite_in_use)
            note = protection_note(projected, risks)
            if inventory.lifecycle_policy is not None and same_rules(inventory.lifecycle_policy, guarded_text):
                return Change(None, f"{ref.name} already has these rules; nothing was changed. {note}".strip())
            backup_id = self._store.save_backup(ref, inventory.lifecycle_policy, "before adoption")
            decision = self._gate.record(ref, "tuned" if tuned else "adopted", actor, owners,
                                         inventory.lifecycle_policy, guarded_text, projected.adopted_savings_usd,
                                         backup_id, born=born)
            self._put_or_withdraw(ref, decision, lambda: self._collector.put_lifecycle_policy(ref, guarded_text),
                                  f"AWS refused the policy for {ref.name}",
                                  f"nothing changed; backup #{backup_id} kept")
            return Change(decision, note or None)

    def _put_or_withdraw(self, ref: RepositoryRef, decision: PolicyDecision, put: Callable[[], None],
                         failed: str, unchanged: str) -> None:
        """The decision is recorded before AWS is asked, so that a change AWS made is never missing from the undo
        stack. When the call fails, AWS is read again: the decision is withdrawn only if the change did not
        happen (an error whose answer was lost may still have changed the policy)."""
        try:
            put()
            return
        except AwsError as exc:
            error = exc
        try:
            happened = same_document(self._collector.get_lifecycle_policy(ref), decision.policy_after)
        except AwsError:
            happened = True  # cannot tell: keep the decision, so a rollback stays possible
        if happened:
            raise PolicyOperationError(f"{failed}: {describe(error)}, yet the change is in AWS: it was "
                                       f"recorded (decision #{decision.id}) and can be rolled back") from None
        self._gate.withdraw(decision)
        raise PolicyOperationError(f"{failed}: {describe(error)} ({unchanged})") from None

    def refresh_protection(self, ref: RepositoryRef, images: list[Image], used: dict[str, list[Usage]],
                           policy: dict, manifests: dict[str, Manifest],
                           release: bool = True) -> tuple[PinPlan, list[str]]:
        """The guard's pass over a policy the bot adopted: pins new in-use images, and (``release``) releases
        pins of images no longer used that the policy would expire anyway. No policy changes: no backup, no
        decision. Returns the plan carried out (only the releases AWS did) and the releases that failed."""
        with self._gate.claimed(ref):
            plan = plan_pins(images, used, policy, self._clock(), manifests)
            if not release:
                plan = PinPlan(plan.pin, (), plan.keep_pinned + plan.release)
            failed = self._apply_pins(ref, plan, release=release)
            done = tuple(d for d in plan.release if d not in failed)
            return PinPlan(plan.pin, done, plan.keep_pinned + tuple(failed)), list(failed.values())

    def _apply_pins(self, ref: RepositoryRef, plan: PinPlan, release: bool) -> dict[str, str]:
        """Pins (a failure raises: the policy must not be put) and releases; returns the releases that failed,
        digest -> why (the pin stays: the image is kept)."""
        try:
            for digest in plan.pin:
                self._collector.add_tag(ref, digest, pin_tag(digest))
        except (AwsError, LookupError) as exc:
            raise PolicyOperationError(f"cannot pin the in-use images of {ref.name} ({describe(exc)}); "
                                       f"its policy was not changed") from None
        failed: dict[str, str] = {}
        for digest in plan.release if release else ():
            try:
                self._collector.remove_tag(ref, pin_tag(digest))
            except (AwsError, LookupError) as exc:
                failed[digest] = (f"{ref.name}: the pin of {digest[:19]} could not be released "
                                  f"({describe(exc)}); it stays pinned")
        return failed

    def rollback(self, ref: RepositoryRef, actor: Actor, force: bool = False, over: str | None = None,
                 despite_in_use: bool = False) -> Change:
        """Restores the policy in force before the latest adoption not yet undone (deletes it when there was
        none), byte for byte. Refuses with HandEdited when the live policy is not what the bot last put, unless
        ``force``; with ``over`` (the fingerprint of the hand edit a person was shown), only over that very edit.
        Refuses with HarmsInUse when the restored policy would now expire or archive an in-use image (pins make
        tagged images count: a team's "keep 3 tagged" may now select a running one), unless ``despite_in_use``;
        then the note names the running images it will expire."""
        with self._gate.claimed(ref):
            owners, born = self._gate.authorise(ref, actor)
            stack = self.undo_stack(ref.arn, born)
            if not stack:
                return Change(None, f"nothing to roll back on {ref.name}: no adoption through the bot is in force; "
                                    f"nothing was changed")
            adoption = stack[-1]
            inventory = self._gate.live_inventory(ref)
            live = inventory.lifecycle_policy
            last = self.last_put(ref.arn, born)
            assert last is not None  # an adoption is in force: it was put
            expected = last.policy_after
            edited = not same_document(live, expected)
            if edited and (not force or (over is not None and over != fingerprint(live))):
                raise HandEdited(ref, live, expected)  # unforced, or edited again since the person saw it
            assert adoption.backup_id is not None  # every adoption backs up first
            had_policy, restored = self._store.backup(adoption.backup_id)
            risks: list[str] = []
            if had_policy:
                restored_policy, problems = validate_policy(restored)
                used = self._in_use.repository(ref, inventory.images, inventory.manifests, who_may_pull=True).of(
                    ref.account_id, ref.region, ref.name)
                if problems:  # what AWS once held, but it cannot be evaluated: never restored unconfirmed
                    risks = [f"the previous policy cannot be evaluated ({problems[0]}): whether it expires images "
                             f"in use is unknown"]
                    if not despite_in_use:
                        raise HarmsInUse(ref, "restoring the previous policy", risks)
                else:
                    assert restored_policy is not None  # no problems: a policy
                    risks = self._final_check(ref, "restoring the previous policy", restored_policy,
                                              inventory.images, inventory.manifests, used, force=despite_in_use)
            backup_id = self._store.save_backup(ref, live, "before rollback")
            savings = adoption.projected_monthly_savings_usd
            decision = self._gate.record(ref, "rolled_back", actor, owners, live, restored if had_policy else None,
                                         None if savings is None else -savings, backup_id, undoes=adoption.id,
                                         born=born)
            self._put_or_withdraw(
                ref, decision, (lambda: self._collector.put_lifecycle_policy(ref, cast(str, restored))) if had_policy
                else (lambda: self._collector.delete_lifecycle_policy(ref)),
                f"rollback of {ref.name} failed", "its policy is unchanged")
            if risks:
                return Change(decision, f"Restored as confirmed; it will expire or archive {len(risks)} image(s) in "
                                        f"use: " + "; ".join(risks[:5]) + (" …" if len(risks) > 5 else ""))
            return Change(decision)

    def _final_check(self, ref: RepositoryRef, what: str, policy: dict, images: list[Image],
                     manifests: dict[str, Manifest], used: dict[str, list[Usage]], force: bool) -> list[str]:
        """The one safety check before any policy is put: ``policy`` evaluated (every action) on the images as
        they will be, pins included. Raises HarmsInUse naming the in-use images it would expire or archive,
        unless ``force``; returns them (empty: nothing in use is touched)."""
        found = [describe_harm(image, priority, action, used.get(image.digest, ()))
                 for image, priority, action in harmed(images, policy, used, self._clock(), manifests)]
        if found and not force:
            raise HarmsInUse(ref, what, found)
        return found

    def choose(self, ref: RepositoryRef, action: str, actor: Actor, reason: str | None = None,
               note: str | None = None) -> Change:
        """A decline (an exemption, with its reason) or a snooze: nothing changes in AWS, the choice is logged.
        A snooze is logged once per snooze period; a decline again only when its reason or note changed."""
        if action not in ("declined", "snoozed"):
            raise ValueError(action)
        if reason is not None and reason not in EXEMPTION_REASONS:
            raise PolicyOperationError(f"the reason must be one of {', '.join(EXEMPTION_REASONS)}; nothing was changed")
        with self._gate.claimed(ref):
            owners, born = self._gate.authorise(ref, actor)
            same = self._store.decisions(ref.arn, actions=(action,))
            if action == "snoozed" and same and self._clock() - same[-1].at < SNOOZE:
                return Change(None, f"already snoozed {same[-1].at:%Y-%m-%d}; nothing was changed")
            if action == "declined":
                current = exemption_of({}, self._store.decisions(ref.arn))
                if current is not None and (current.reason, current.note) == (reason or "no reason given", note):
                    return Change(None, f"already exempt since {current.at:%Y-%m-%d} ({current.text}); "
                                        f"nothing was changed")
            return Change(self._gate.record(ref, action, actor, owners, None, None, None, None, born=born,
                                            reason=reason, note=note))

    def lift_exemption(self, ref: RepositoryRef, actor: Actor) -> Change:
        """An admin ends an owner's decline: the repository is nudged and counted again. An exemption declared by
        the repository's tag is lifted where it is declared, in the infrastructure code."""
        if not actor.is_admin:
            raise NotAnAdmin(f"lift the exemption of {ref.name}")
        with self._gate.claimed(ref):
            tags, born = self._gate.live_tags(ref)
            if EXEMPT_TAG in tags:
                raise PolicyOperationError(f"{ref.name} is exempt by its {EXEMPT_TAG} tag ({tags[EXEMPT_TAG]!r}): "
                                           f"remove the tag where the repository is defined; nothing was changed")
            if exemption_of(tags, self._store.decisions(ref.arn)) is None:
                return Change(None, f"{ref.name} is not exempt; nothing was changed")
            owners = self._gate.owners(tags)
            return Change(self._gate.record(ref, "exemption_lifted", actor, owners, None, None, None, None, born=born))

    def aws_cross_check(self, found: PolicyPreview) -> str:
        """Compares our preview with AWS's own; tolerates its absence or a lack of permission."""
        try:
            theirs = self._collector.aws_preview(found.ref, found.policy_text)
        except (AwsError, TimeoutError) as exc:
            return f"AWS preview unavailable ({describe(exc)}); the local evaluation stands alone"
        ours = {d.image.digest for d in found.result.decisions if d.action == "expire"}
        if ours == set(theirs):
            return f"AWS preview agrees: the same {len(ours)} images expire"
        return (f"AWS preview DIFFERS: {len(set(theirs) - ours)} images only AWS would expire, "
                f"{len(ours - set(theirs))} only the local evaluation would")


def describe_harm(image: Image, priority: int, action: str, usages) -> str:
    """One in-use image a policy would touch: which, by which rule, what happens, where it runs."""
    tags = ", ".join(image.tags) or "untagged"
    what = "would expire it" if action == "expire" else \
        "would move it to the archive (unpullable until restored)"
    where = ", ".join(sorted({f"{u.kind} {u.name}" for u in usages})[:3]) or "in use"
    return f"{image.digest[:19]} ({tags}): rule {priority} {what}; it runs in {where}"


def protection_note(found: PolicyPreview, harmed_put: list[str] | tuple[str, ...] = ()) -> str:
    """What protection does here, in one line: the in-use images kept, where they run, and any blind spot.
    ``harmed_put``: the in-use images the policy actually put still expires or archives (a forced change)."""
    if found.in_use is None:
        return ""
    parts = []
    used, expiring = found.used, found.in_use_expiring
    if used:
        where = sorted({u.kind for usages in used.values() for u in usages})
        kept = "all kept" if not harmed_put else f"{len(harmed_put)} NOT kept ({'; '.join(harmed_put[:3])})"
        parts.append(f"Images in use: {len(used)} ({', '.join(where)}), {kept}"
                     + (f"; the policy as written would have expired {len(expiring)} of them"
                        if expiring else ""))
    if found.in_use.partial:
        blind = "; ".join(f"{p.source} in {p.account_id} {p.region}: {p.message}" for p in found.in_use.problems[:3])
        parts.append(f"In-use check partial ({blind}): images running there cannot be seen")
    return ". ".join(parts) + ("." if parts else "")


def compact(policy: dict) -> str:
    """A policy as the bot puts it: compact JSON, so a large policy stays within ECR's 30,720 characters."""
    return json.dumps(policy, separators=(",", ":"))
