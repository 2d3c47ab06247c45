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
from datetime import UTC, datetime
from typing import cast

from .aws.ecr import EcrCollector
from .config import Settings
from .core.analysis import exemption_of
from .core.cost import monthly_cost, owner_tag_value, parse_owners, price_repository, reachable_manifests
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
    RepositoryCost,
    RepositoryInventory,
    RepositoryRef,
)
from .errors import (
    AwsError,
    HandEdited,
    HarmsInUse,
    HasOwners,
    InUsePartial,
    NotAnAdmin,
    NotAnOwner,
    PolicyOperationError,
    describe,
)
from .format import iso, plural, size
from .heartbeat import heartbeat
from .store import HEARTBEAT_SECONDS, PROCESS, Store
from .usage import InUseFinder


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


@dataclass(frozen=True)
class Deletion:
    """A repository deleted: the decision, and the export kept before (also in the store, by its id)."""

    decision: PolicyDecision
    export_id: int
    export: str  # the JSON text
    row: RepositoryCost  # the repository as it was just before
    note: str | None = None


@dataclass(frozen=True)
class Change:
    """What a change did: the decision recorded, or None with a note when nothing needed changing."""

    decision: PolicyDecision | None
    note: str | None = None


class PolicyChanges:
    def __init__(self, collector: EcrCollector, store: Store, settings: Settings, in_use: InUseFinder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._collector = collector
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

    # -- reading ---------------------------------------------------------------------------

    def read(self, ref: RepositoryRef) -> RepositoryInventory:
        """The repository as AWS has it now."""
        try:
            return self._collector.refresh(ref)
        except AwsError as exc:
            raise self._read_error(ref, exc) from None

    @staticmethod
    def _read_error(ref: RepositoryRef, exc: AwsError) -> PolicyOperationError:
        if exc.code == "RepositoryNotFoundException":
            return PolicyOperationError(f"{ref.name} no longer exists in {ref.account_id} {ref.region}; "
                                        f"nothing was changed")
        return PolicyOperationError(f"cannot read {ref.name} in {ref.account_id} {ref.region}: "
                                    f"{describe(exc)}; nothing was changed")

    def preview(self, ref: RepositoryRef, policy_text: str | None = None, *, images: list[Image] | None = None,
                manifests: dict[str, Manifest] | None = None, source: str = "latest scan",
                with_in_use: bool = True, who_may_pull: bool = False) -> PolicyPreview:
        """What ``policy_text`` (default: the base policy) would expire as written, and (``with_in_use``) what
        its adopted form would, every in-use image kept: from the images given, else a fresh read."""
        text, policy = self.checked(policy_text)
        if images is None:
            inventory = self.read(ref)
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
        with self._claimed(ref):
            owners, born = self._authorise(ref, actor)
            inventory = self.read(ref)  # the policy and images as they are now, not as the last scan saw them
            if current:
                if inventory.lifecycle_policy is None:
                    return Change(None, f"{ref.name} has no lifecycle policy: nothing expires, nothing to protect")
                text, policy = self.checked(compact(unprotected(json.loads(inventory.lifecycle_policy))))
            assert policy is not None  # checked above, or just now
            projected = self.preview(ref, text, images=inventory.images, manifests=inventory.manifests,
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
            live = self.read(ref).images if plan.pin else inventory.images  # the pins as AWS has them now
            risks = self._final_check(ref, "adopting this policy", json.loads(guarded_text), live,
                                      inventory.manifests, projected.used, force=despite_in_use)
            note = protection_note(projected, risks)
            if inventory.lifecycle_policy is not None and same_rules(inventory.lifecycle_policy, guarded_text):
                return Change(None, f"{ref.name} already has these rules; nothing was changed. {note}".strip())
            backup_id = self._store.save_backup(ref, inventory.lifecycle_policy, "before adoption")
            decision = self._record(ref, "tuned" if tuned else "adopted", actor, owners, inventory.lifecycle_policy,
                                    guarded_text,
                                    projected.adopted_savings_usd, backup_id, born=born)
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
        assert decision.id is not None  # recorded
        self._store.withdraw_decision(decision.id)
        raise PolicyOperationError(f"{failed}: {describe(error)} ({unchanged})") from None

    def refresh_protection(self, ref: RepositoryRef, images: list[Image], used: dict[str, list[Usage]],
                           policy: dict, manifests: dict[str, Manifest],
                           release: bool = True) -> tuple[PinPlan, list[str]]:
        """The guard's pass over a policy the bot adopted: pins new in-use images, and (``release``) releases
        pins of images no longer used that the policy would expire anyway. No policy changes: no backup, no
        decision. Returns the plan carried out (only the releases AWS did) and the releases that failed."""
        with self._claimed(ref):
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
        with self._claimed(ref):
            owners, born = self._authorise(ref, actor)
            stack = self.undo_stack(ref.arn, born)
            if not stack:
                return Change(None, f"nothing to roll back on {ref.name}: no adoption through the bot is in force; "
                                    f"nothing was changed")
            adoption = stack[-1]
            inventory = self.read(ref)
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
            decision = self._record(ref, "rolled_back", actor, owners, live, restored if had_policy else None,
                                    None if savings is None else -savings, backup_id, undoes=adoption.id, born=born)
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
        with self._claimed(ref):
            owners, born = self._authorise(ref, actor)
            same = self._store.decisions(ref.arn, actions=(action,))
            if action == "snoozed" and same and self._clock() - same[-1].at < SNOOZE:
                return Change(None, f"already snoozed {same[-1].at:%Y-%m-%d}; nothing was changed")
            if action == "declined":
                current = exemption_of({}, self._store.decisions(ref.arn))
                if current is not None and (current.reason, current.note) == (reason or "no reason given", note):
                    return Change(None, f"already exempt since {current.at:%Y-%m-%d} ({current.text}); "
                                        f"nothing was changed")
            return Change(self._record(ref, action, actor, owners, None, None, None, None, born=born, reason=reason,
                                       note=note))

    def lift_exemption(self, ref: RepositoryRef, actor: Actor) -> Change:
        """An admin ends an owner's decline: the repository is nudged and counted again. An exemption declared by
        the repository's tag is lifted where it is declared, in the infrastructure code."""
        if not actor.is_admin:
            raise NotAnAdmin(f"lift the exemption of {ref.name}")
        with self._claimed(ref):
            tags, born = self._live(ref)
            if EXEMPT_TAG in tags:
                raise PolicyOperationError(f"{ref.name} is exempt by its {EXEMPT_TAG} tag ({tags[EXEMPT_TAG]!r}): "
                                           f"remove the tag where the repository is defined; nothing was changed")
            if exemption_of(tags, self._store.decisions(ref.arn)) is None:
                return Change(None, f"{ref.name} is not exempt; nothing was changed")
            owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
            return Change(self._record(ref, "exemption_lifted", actor, owners, None, None, None, None, born=born))

    # -- deleting an unused repository -----------------------------------------------------------

    def delete_repository(self, ref: RepositoryRef, actor: Actor, check_unused: bool = True,
                          deliver: Callable[[int, str], None] | None = None) -> Deletion:
        """Exports, then deletes, a repository nobody uses: unused for ECR_COST_UNUSED_DAYS (``check_unused``) and,
        always, no image in use anywhere the bot looks, with nothing it could not see. Everything is checked on
        a fresh read at this moment. The export (every image's digest, tags, times and manifest JSON, the tags
        and the lifecycle policy) is stored, then handed to ``deliver`` (export id, JSON text: a file for the
        person), before the repository is deleted; a delivery that fails deletes nothing."""
        with self._claimed(ref):
            owners, born = self._authorise(ref, actor)
            inventory = self.read(ref)
            now = self._clock()
            row, _ = price_repository(inventory, price_per_gb_month=self._settings.price_per_gb_month,
                                      unused_days=self._settings.unused_days, owner_tag=self._settings.owner_tag,
                                      now=now)
            if check_unused and not row.unused:
                last = max((t for t in (row.last_pushed_at, row.last_pulled_at) if t), default=None)
                raise PolicyOperationError(
                    f"{ref.name} is not unused: an image was pushed or pulled {last:%Y-%m-%d %H:%M} UTC, within "
                    f"{self._settings.unused_days} days; nothing was deleted")
            found = self._in_use.repository(ref, inventory.images, inventory.manifests, fresh=True,
                                            who_may_pull=True)
            used = found.of(ref.account_id, ref.region, ref.name)
            if used:
                where = sorted({f"{u.kind} {u.name}" for usages in used.values() for u in usages})
                raise PolicyOperationError(f"{ref.name} has {len(used)} image(s) in use ({', '.join(where[:5])}"
                                           f"{' …' if len(where) > 5 else ''}); nothing was deleted")
            if found.partial:
                raise PolicyOperationError(
                    f"the in-use check of {ref.name} is partial, so the bot cannot tell that nothing runs from it; "
                    f"nothing was deleted", [f"{p.source} in {p.account_id} {p.region}: {p.message}"
                                             for p in found.problems])
            try:
                documents, failures = self._collector.manifest_documents(ref, [i.digest for i in inventory.images])
            except AwsError as exc:
                raise self._read_error(ref, exc) from None
            if failures:
                raise PolicyOperationError(f"{len(failures)} manifest(s) of {ref.name} could not be exported; "
                                           f"nothing was deleted", failures)
            content = export_document(inventory, documents, row, now)
            export_id = self._store.save_export(ref, actor.user_id, content)
            try:
                if deliver is not None:
                    deliver(export_id, content)
            except Exception as exc:  # noqa: BLE001 - whatever the channel, the person must have it first
                raise PolicyOperationError(f"the export of {ref.name} (#{export_id}, kept by the bot) could not be "
                                           f"delivered to you ({exc}); nothing was deleted") from None
            try:  # an image pushed while the export was taken or delivered would go unexported: look again
                now_there = self._collector.image_digests(ref)
            except AwsError as exc:
                raise self._read_error(ref, exc) from None
            if now_there != {i.digest for i in inventory.images}:
                raise PolicyOperationError(f"{ref.name} changed while it was being exported "
                                           f"({len(now_there - {i.digest for i in inventory.images})} image(s) "
                                           f"pushed, {len({i.digest for i in inventory.images} - now_there)} gone); "
                                           f"nothing was deleted: look again before deleting it")
            decision = self._record(ref, "deleted", actor, owners, inventory.lifecycle_policy, None,
                                    row.monthly_cost_usd, None, born=born,
                                    note=f"export #{export_id}: {plural(row.image_count, 'image')}, "
                                         f"{size(row.stored_bytes)}")
            try:
                self._collector.delete_repository(ref)
            except AwsError as exc:
                exists = self._exists(ref)
                if exists is False:  # the answer was lost, the deletion was not
                    return Deletion(decision, export_id, content, row)
                if exists is None:
                    raise PolicyOperationError(f"deleting {ref.name} failed ({describe(exc)}) and whether it "
                                               f"still exists cannot be read: the deletion stays recorded "
                                               f"(decision #{decision.id}, export #{export_id})") from None
                assert decision.id is not None  # recorded
                self._store.withdraw_decision(decision.id)
                raise PolicyOperationError(f"AWS refused to delete {ref.name}: {describe(exc)}; nothing was "
                                           f"deleted (export #{export_id} kept)") from None
            return Deletion(decision, export_id, content, row)

    def _exists(self, ref: RepositoryRef) -> bool | None:
        """Whether the repository exists now (None: it cannot be told)."""
        try:
            self._collector.created_at(ref)
        except AwsError as exc:
            return False if exc.code == "RepositoryNotFoundException" else None
        return True

    # -- claiming an unowned repository ----------------------------------------------------------

    def claim_ownership(self, ref: RepositoryRef, claimer: str) -> tuple[int, bool]:
        """A person asks to own a repository whose owner tag (as AWS has it now) names nobody: (the claim's id,
        whether it is new). An admin approves or rejects it (decide_claim)."""
        tags, _ = self._live(ref)
        owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
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
        with self._claimed(ref):
            if not approve:  # nothing changes in AWS: a repository deleted since can still be rejected
                if not self._store.decide_ownership_claim(claim_id, "rejected", actor.user_id):
                    return Change(None, f"this claim on {ref.name} was already decided; nothing was changed")
                return Change(self._record(ref, "claim_rejected", actor, (), None, None, None, None,
                                           note=f"claimed by {claimer}"))
            tags, born = self._live(ref)
            key = self._settings.owner_tag
            owners, _ = parse_owners(owner_tag_value(tags, key))
            if owners:
                if self._store.decide_ownership_claim(claim_id, "superseded", actor.user_id):
                    self._record(ref, "claim_rejected", actor, owners, None, None, None, None, born=born,
                                 note=f"claimed by {claimer}; owners were tagged meanwhile")
                raise HasOwners(ref, owners)
            if not self._store.decide_ownership_claim(claim_id, "approved", actor.user_id):
                return Change(None, f"this claim on {ref.name} was already decided; nothing was changed")
            before = f" (it was {tags[key]!r})" if key in tags else ""
            decision = self._record(ref, "claimed", actor, (), None, None, None, None, born=born,
                                    note=f"owner tag {key}={claimer}{before}, claimed by {claimer}")
            try:
                self._collector.tag_repository(ref, key, claimer)
            except AwsError as exc:
                try:
                    happened = self._collector.read_tags(ref).get(key) == claimer
                except AwsError:
                    happened = True  # cannot tell: keep the record
                if not happened:
                    assert decision.id is not None  # recorded
                    self._store.withdraw_decision(decision.id)
                    self._store.decide_ownership_claim(claim_id, "pending", actor.user_id, only_from="approved")
                    raise PolicyOperationError(f"AWS refused to tag {ref.name}: {describe(exc)}; nothing was "
                                               f"changed, the claim is still pending") from None
            return Change(decision)

    # -- a repository tag the bot sets for an owner (a limit) ----------------------------------------

    def set_tag(self, ref: RepositoryRef, key: str, value: str | None, actor: Actor, action: str, note: str,
                expect: tuple[str | None] | None = None, undoes: int | None = None) -> Change:
        """Sets (``value`` None: removes) the repository tag ``key`` for an owner or an admin and records it with the
        value before and after (what an undo restores). ``expect``: the value the tag must have now (an undo refuses
        a tag changed since)."""
        with self._claimed(ref):
            tags, born = self._live(ref)
            owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
            if not actor.may_change(owners):
                raise NotAnOwner(ref, owners)
            before = tags.get(key)
            if expect is not None and before != expect[0]:
                raise PolicyOperationError(f"the {key} tag of {ref.name} was changed since ({before!r}); nothing was "
                                           f"changed")
            if before == value:
                return Change(None, f"{ref.name} already has {key}={value}; nothing was changed" if value is not None
                              else f"{ref.name} has no {key} tag; nothing was changed")
            decision = self._store.record_decision(PolicyDecision(
                None, ref.name, ref.account_id, ref.region, ref.arn, action, actor.user_id, actor.source, self._clock(),
                None, None, None, owners_checked=owners, undoes=undoes, repository_created_at=born, note=note,
                tag_before=before, tag_after=value))
            try:
                if value is None:
                    self._collector.untag_repository(ref, key)
                else:
                    self._collector.tag_repository(ref, key, value)
            except AwsError as exc:
                try:
                    happened = self._collector.read_tags(ref).get(key) == value
                except AwsError:
                    happened = True  # cannot tell: keep the record, so an undo stays possible
                if not happened:
                    assert decision.id is not None  # recorded
                    self._store.withdraw_decision(decision.id)
                    raise PolicyOperationError(f"AWS refused to tag {ref.name}: {describe(exc)}; nothing was "
                                               f"changed") from None
            return Change(decision)

    # -- the checks ------------------------------------------------------------------------

    def _live(self, ref: RepositoryRef) -> tuple[dict[str, str], datetime | None]:
        """(the repository's tags as AWS has them now, when it was created)."""
        try:
            born = self._collector.created_at(ref)
            return self._collector.read_tags(ref), born
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                raise self._read_error(ref, exc) from None
            raise PolicyOperationError(f"cannot read the owner tag of {ref.name} ({describe(exc)}), so nobody "
                                       f"can be checked as its owner; nothing was changed") from None

    def _authorise(self, ref: RepositoryRef, actor: Actor) -> tuple[tuple[str, ...], datetime | None]:
        """(the owners as AWS tags them now, when the repository was created); raises NotAnOwner unless
        ``actor`` is one of the owners or an admin. The creation time keeps a re-created repository's history
        apart from the deleted one's."""
        tags, born = self._live(ref)
        owners, _ = parse_owners(owner_tag_value(tags, self._settings.owner_tag))
        if not actor.may_change(owners):
            raise NotAnOwner(ref, owners)
        return owners, born

    def _claimed(self, ref: RepositoryRef):
        return claimed(self._store, ref)

    def _record(self, ref, action, actor: Actor, owners, before, after, savings, backup_id,
                undoes: int | None = None, born: datetime | None = None, reason: str | None = None,
                note: str | None = None) -> PolicyDecision:
        return self._store.record_decision(PolicyDecision(
            None, ref.name, ref.account_id, ref.region, ref.arn, action, actor.user_id, actor.source, self._clock(),
            before, after, savings, backup_id, owners_checked=owners, undoes=undoes,
            repository_created_at=born, reason=reason, note=note))

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


def export_document(inventory: RepositoryInventory, documents: dict[str, dict], row: RepositoryCost,
                    at: datetime) -> str:
    """A repository as it was before its deletion: enough to know what was there and to rebuild its images'
    manifests (the layers themselves go with the repository)."""
    ref = inventory.ref
    return json.dumps({
        "exported_at": iso(at), "repository": ref.name, "account_id": ref.account_id, "region": ref.region,
        "arn": ref.arn, "created_at": iso(inventory.created_at), "tags": inventory.tags,
        "lifecycle_policy": inventory.lifecycle_policy, "stored_bytes": row.stored_bytes,
        "monthly_cost_usd": round(row.monthly_cost_usd, 4),
        "images": [{"image_digest": i.digest, "image_tags": list(i.tags), "image_pushed_at": iso(i.pushed_at),
                    "last_recorded_pull_time": iso(i.last_pulled_at), "image_size_in_bytes": i.listed_bytes,
                    "media_type": i.media_type, "status": i.status} for i in inventory.images],
        "manifests": {digest: documents[digest] for digest in sorted(documents)},
    }, indent=1)


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
