"""A stateful property test of the promises that span features, against moto's server.

Random sequences of: adopt the base policy, a custom or a tuned policy, roll back (plain or forced), a hand
edit in AWS, an owner-tag change or removal, decline and lift exemptions, claim an unowned repository and have
it approved, try to delete the repository, clicks by random people, two clicks at once. After every step:
- the policy in AWS is exactly what the model expects (nobody outside the owners, as tagged at that moment,
  and the admins ever changed it; a rollback never overwrote a hand edit without force);
- the owner tag in AWS is what the model expects (only an admin's approval of a claim sets it), and the
  repository still exists (it is in use lately: no deletion goes through);
- the policy in force before the bot's first adoption is stored, byte for byte, at the bottom of the undo stack;
and at the end successive rollbacks walk back to that policy, byte for byte.
"""
from __future__ import annotations

import itertools
import json
import threading

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from bot.adoption import Actor, HandEdited, HasOwners, NotAnAdmin, NotAnOwner, PolicyOperationError, compact
from bot.config import load_settings
from bot.core.lifecycle import same_document
from bot.core.models import RepositoryRef
from bot.core.tuning import Tuning, tuned_policy
from bot.sample import SampleRepository, blob, image
from bot.wiring import build
from tests.helpers.aws import ACCOUNT, BASE, ecr, load

USERS = ("U0ALICE01", "U0BOBBY01", "U0CAROL01")
ADMIN = "U0ADMIN01"
ORIGINALS = (None, json.dumps({"rules": [{"rulePriority": 1, "description": "the team's own, kept as typed",
                                          "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                        "countUnit": "days", "countNumber": 14},
                                          "action": {"type": "expire"}}]}, indent=3))
CUSTOMS = [json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": n}, "action": {"type": "expire"}}]})
    for n in (5, 50)]
HAND_EDITS = [json.dumps({"rules": [{"rulePriority": 7, "description": f"edited in the console {n}",
                                     "selection": {"tagStatus": "tagged", "tagPrefixList": ["release"],
                                                   "countType": "imageCountMoreThan", "countNumber": 3},
                                     "action": {"type": "expire"}}]}) for n in (1, 2)]
_names = itertools.count()


def actor(user_id: str) -> Actor:
    return Actor(user_id, "slack", is_admin=user_id == ADMIN, names_me=lambda entry: entry == user_id)


def live_policy(name: str) -> str | None:
    client = ecr()
    try:
        return client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except client.exceptions.LifecyclePolicyNotFoundException:
        return None


class AdoptionMachine(RuleBasedStateMachine):
    db_dir = None

    @initialize(original=st.sampled_from(ORIGINALS), owner=st.sampled_from(USERS))
    def create(self, original, owner):
        self.name = f"inv-{next(_names)}"
        images = [image(BASE + [blob(f"{self.name}-{n}", 1000 + n)], blob(f"{self.name}-c{n}", 100),
                        (f"v1.{n}",) if n % 2 else (), pushed_days_ago=10 - n) for n in range(4)]
        load([SampleRepository("us-east-1", self.name, images, tags={"owner": owner}, policy=original)])
        self.ref = RepositoryRef(ACCOUNT, "us-east-1", self.name,
                                 f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{self.name}")
        env_settings = load_settings()
        self.built = build(env_settings.__class__(**{**vars(env_settings),
                                                     "db_path": str(self.db_dir / f"{self.name}.db"),
                                                     "admins": (ADMIN,)}))
        self.changes = self.built.changes
        self.owner = owner
        self.live = original  # the model: what AWS must hold
        self.bottom = None  # the policy before the first adoption of the current stack
        self.stack_depth = 0
        self.bot_last_put = None  # what the bot last put (None before any change)

    def teardown(self):
        if hasattr(self, "built"):
            try:
                if self.stack_depth:
                    bottom = self.bottom
                    while self.changes.undo_stack(self.ref.arn):
                        self.changes.rollback(self.ref, actor(ADMIN), force=True)
                    assert live_policy(self.name) == bottom  # walked back to the original, byte for byte
            finally:
                self.built.close()

    def _allowed(self, user: str) -> bool:
        return user == ADMIN or user == self.owner

    def _adopt(self, user: str, text: str | None, tuned: bool = False):
        before = len(self.changes.undo_stack(self.ref.arn))
        try:
            change = self.changes.adopt(self.ref, text, actor(user), tuned=tuned)
        except NotAnOwner:
            assert not self._allowed(user)
            return
        assert self._allowed(user)
        if change.decision is None:
            return
        if before == 0:
            self.bottom = self.live
        self.stack_depth = before + 1
        self.live = self.bot_last_put = change.decision.policy_after

    @rule(user=st.sampled_from(USERS + (ADMIN,)))
    def adopt_base(self, user):
        self._adopt(user, None)

    @rule(user=st.sampled_from(USERS + (ADMIN,)), text=st.sampled_from(CUSTOMS))
    def adopt_custom(self, user, text):
        self._adopt(user, text)

    @rule(user=st.sampled_from(USERS + (ADMIN,)), versions=st.sampled_from((2, 5)))
    def adopt_tuned(self, user, versions):
        self._adopt(user, compact(tuned_policy(Tuning(versions=versions))), tuned=True)

    @rule(user=st.sampled_from(USERS + (ADMIN,)), lifter=st.sampled_from(USERS + (ADMIN,)))
    def decline_then_lift(self, user, lifter):
        try:
            self.changes.choose(self.ref, "declined", actor(user), "compliance", "a note")
        except NotAnOwner:
            assert not self._allowed(user)
        else:
            assert self._allowed(user)
        try:
            self.changes.lift_exemption(self.ref, actor(lifter))
        except NotAnAdmin:
            assert lifter != ADMIN
        else:
            assert lifter == ADMIN

    @rule()
    def remove_owner_tag(self):
        ecr().untag_resource(resourceArn=self.ref.arn, tagKeys=["owner"])
        self.owner = None

    @rule(claimer=st.sampled_from(USERS), approver=st.sampled_from(USERS + (ADMIN,)))
    def claim(self, claimer, approver):
        try:
            claim_id, _ = self.changes.claim_ownership(self.ref, claimer)
        except HasOwners:
            assert self.owner is not None
            return
        assert self.owner is None
        try:
            change = self.changes.decide_claim(claim_id, True, actor(approver))
        except NotAnAdmin:
            assert approver != ADMIN
            return
        assert approver == ADMIN and change.decision.action == "claimed"
        self.owner = claimer

    @rule(user=st.sampled_from(USERS + (ADMIN,)))
    def try_to_delete(self, user):
        with pytest.raises(PolicyOperationError) as refused:
            self.changes.delete_repository(self.ref, actor(user))
        assert isinstance(refused.value, NotAnOwner) != self._allowed(user)

    @rule(user=st.sampled_from(USERS + (ADMIN,)), force=st.booleans())
    def rollback(self, user, force):
        depth = len(self.changes.undo_stack(self.ref.arn))
        edited = depth > 0 and not same_document(self.live, self.bot_last_put)  # changed by hand since
        try:
            change = self.changes.rollback(self.ref, actor(user), force=force)
        except NotAnOwner:
            assert not self._allowed(user)
            return
        except HandEdited:
            assert edited and not force and self._allowed(user)
            return
        assert self._allowed(user)
        if change.decision is None:
            assert depth == 0
            return
        assert not edited or force  # never over a hand edit without force
        self.live = self.bot_last_put = change.decision.policy_after
        self.stack_depth = depth - 1

    @rule(text=st.sampled_from(HAND_EDITS + [None]))
    def hand_edit(self, text):
        if text is not None:
            ecr().put_lifecycle_policy(repositoryName=self.name, lifecyclePolicyText=text)
        elif self.live is not None:
            ecr().delete_lifecycle_policy(repositoryName=self.name)
        self.live = text

    @rule(owner=st.sampled_from(USERS))
    def change_owner_tag(self, owner):
        ecr().tag_resource(resourceArn=self.ref.arn, tags=[{"Key": "owner", "Value": owner}])
        self.owner = owner

    @rule(user=st.sampled_from(USERS + (ADMIN,)))
    def two_clicks_at_once(self, user):
        before = len(self.changes.undo_stack(self.ref.arn))
        outcomes, start = [], threading.Barrier(2)

        def click():
            start.wait(timeout=10)
            try:
                outcomes.append(self.changes.adopt(self.ref, None, actor(user)))
            except PolicyOperationError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=click) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        adopted = [o for o in outcomes if not isinstance(o, Exception) and o.decision is not None]
        assert len(adopted) <= 1  # two clicks never make two adoptions
        if not self._allowed(user):  # refused, or told another change is in progress: never adopted
            assert all(isinstance(o, PolicyOperationError) for o in outcomes) and \
                any(isinstance(o, NotAnOwner) for o in outcomes)
        if adopted:
            if before == 0:
                self.bottom = self.live
            self.stack_depth = before + 1
            self.live = self.bot_last_put = adopted[0].decision.policy_after

    @invariant()
    def aws_holds_what_the_model_expects(self):
        if hasattr(self, "built"):
            assert live_policy(self.name) == self.live
            tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=self.ref.arn)["tags"]}
            assert tags.get("owner") == self.owner

    @invariant()
    def the_original_is_always_restorable(self):
        if hasattr(self, "built"):
            stack = self.changes.undo_stack(self.ref.arn)
            assert len(stack) == self.stack_depth
            if stack:
                had, text = self.built.store.backup(stack[0].backup_id)
                assert (text if had else None) == self.bottom


@pytest.mark.slow
def test_adoption_promises_hold_over_random_sequences(aws, tmp_path):
    AdoptionMachine.db_dir = tmp_path
    run_state_machine_as_test(AdoptionMachine, settings=settings(
        max_examples=8, stateful_step_count=10, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
