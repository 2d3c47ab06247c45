"""A stateful property test of the promises that span features, against moto's server.

Random sequences of: adopt the base policy, a custom or a tuned policy, roll back (plain or forced), a hand
edit in AWS, an owner-tag change or removal, decline and lift exemptions, claim an unowned repository and have
it approved, try to delete the repository, clicks by random people, two clicks at once; and where images run
(issue 17): ECS services in the registry account, in a workload account the bot enters by AssumeRole, and in a
stranger's account it cannot read (only once a repository policy lets it pull), repository policies granting
other accounts or anyone, a copied policy with the keep rule below another rule, a team's "keep 3 tagged"
(`tagPatternList ["*"]`), archive transitions; the daily guard after each runtime change. After every step:
- the policy in AWS is exactly what the model expects (nobody outside the owners, as tagged at that moment,
  and the admins ever changed it; a rollback never overwrote a hand edit without force);
- the owner tag in AWS is what the model expects (only an admin's approval of a claim sets it), and the
  repository still exists (it is in use lately: no deletion goes through);
- the policy in force before the bot's first adoption is stored, byte for byte, at the bottom of the undo stack;
- no policy the bot put expires or archives an image running where it can see, unless a step forced it
  (rollback --force); adoption is refused while an account it cannot read may pull;
and at the end successive rollbacks walk back to that policy, byte for byte.
"""
from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime

import boto3
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from bot.adoption import compact
from bot.config import load_settings
from bot.core.inuse import PIN_KEEP_COUNT, PIN_PREFIX, PIN_RULE_DESCRIPTION, harmed
from bot.core.lifecycle import same_document, validate_policy
from bot.core.models import Image, RepositoryRef
from bot.core.tuning import Tuning, tuned_policy
from bot.errors import HandEdited, HarmsInUse, HasOwners, InUsePartial, NotAnAdmin, NotAnOwner, PolicyOperationError
from bot.gate import Actor
from bot.sample import SampleRepository, blob, image
from bot.wiring import build
from tests.helpers.aws import ACCOUNT, BASE, ecr, entered, load, role_arn

USERS = ("U0ALICE01", "U0BOBBY01", "U0CAROL01")
ADMIN = "U0ADMIN01"
WORKLOAD, STRANGER = "210987654321", "999988887777"  # the bot enters the workload account; not the stranger's
TEAM_STAR = json.dumps({"rules": [{"rulePriority": 1, "description": "keep 2 tagged", "selection": {
    "tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan", "countNumber": 2},
    "action": {"type": "expire"}}]}, indent=2)
ARCHIVE = json.dumps({"rules": [{"rulePriority": 1, "description": "archive what is older than 5 days", "selection": {
    "tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 5},
    "action": {"type": "transition", "targetStorageClass": "archive"}}]})
COPIED = json.dumps({"rules": [  # someone copied the protected policy and put a rule above the keep rule
    {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
                                      "countNumber": 1}, "action": {"type": "expire"}},
    {"rulePriority": 2, "description": PIN_RULE_DESCRIPTION, "selection": {
        "tagStatus": "tagged", "tagPrefixList": [PIN_PREFIX], "countType": "imageCountMoreThan",
        "countNumber": PIN_KEEP_COUNT}, "action": {"type": "expire"}}]})
ORIGINALS = (TEAM_STAR, ARCHIVE, None, json.dumps({"rules": [{"rulePriority": 1,
                                          "description": "the team's own, kept as typed",
                                          "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                        "countUnit": "days", "countNumber": 14},
                                          "action": {"type": "expire"}}]}, indent=3))
CUSTOMS = [json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": n}, "action": {"type": "expire"}}]})
    for n in (5, 50)]
HAND_EDITS = [json.dumps({"rules": [{"rulePriority": 7, "description": f"edited in the console {n}",
                                     "selection": {"tagStatus": "tagged", "tagPrefixList": ["release"],
                                                   "countType": "imageCountMoreThan", "countNumber": 3},
                                     "action": {"type": "expire"}}]}) for n in (1, 2)] + [TEAM_STAR, ARCHIVE]
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

    @initialize(original=st.sampled_from(ORIGINALS), owner=st.sampled_from(USERS),
                oldest_runs=st.sampled_from((True, False)))
    def create(self, original, owner, oldest_runs):
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
        self.running: dict[tuple[str, str], str] = {}  # (account, service) -> the digest it runs
        self.granted: str | None = None  # the account the repository policy lets pull ("*": anyone)
        self.forced = False  # the bot's last put was forced past the final safety check
        self.runtimes_changed = False  # since the bot's last put
        if oldest_runs:  # the oldest image (untagged) runs from the start: pinning it makes it count as tagged
            oldest = min(self._images(), key=lambda i: i.pushed_at)
            self._run_service(ACCOUNT, oldest.digest)

    def teardown(self):
        if hasattr(self, "built"):
            try:
                if self.stack_depth:
                    bottom = self.bottom
                    while self.changes.undo_stack(self.ref.arn):
                        self.changes.rollback(self.ref, actor(ADMIN), force=True, despite_in_use=True)
                    assert live_policy(self.name) == bottom  # walked back to the original, byte for byte
            finally:
                self.built.close()

    def _allowed(self, user: str) -> bool:
        return user == ADMIN or user == self.owner

    def _partial(self) -> bool:
        """An account the bot cannot read may pull: the in-use check of the repository is partial."""
        return self.granted in (STRANGER, "*")

    def _adopt(self, user: str, text: str | None, tuned: bool = False):
        before = len(self.changes.undo_stack(self.ref.arn))
        try:
            change = self.changes.adopt(self.ref, text, actor(user), tuned=tuned)
        except NotAnOwner:
            assert not self._allowed(user)
            return
        except InUsePartial as refused:
            assert self._allowed(user) and self._partial(), refused.problems
            return
        assert self._allowed(user) and not self._partial()
        if change.decision is None:
            return
        if before == 0:
            self.bottom = self.live
        self.stack_depth = before + 1
        self.live = self.bot_last_put = change.decision.policy_after
        self.forced = self.runtimes_changed = False

    def _images(self) -> list[Image]:
        pages = ecr().get_paginator("describe_images").paginate(repositoryName=self.name)
        return [Image(d["imageDigest"], tuple(d.get("imageTags", ())), d["imageSizeInBytes"], d["imagePushedAt"])
                for p in pages for d in p["imageDetails"]]

    def _visible_in_use(self) -> dict[str, list]:
        """What runs where the bot can see (its own account, the workload account it enters)."""
        return {digest: [] for (account, _), digest in self.running.items() if account != STRANGER}

    def _harmed(self, text: str | None) -> list:
        if text is None:
            return []
        policy, problems = validate_policy(text)
        assert not problems
        return harmed(self._images(), policy, self._visible_in_use(), datetime.now(UTC))

    @rule(where=st.sampled_from((ACCOUNT, WORKLOAD, STRANGER)), index=st.integers(0, 3))
    def start_runtime(self, where, index):
        """An ECS service runs an image by digest; in another account only once a repository policy lets that
        account pull (ECR refuses it otherwise). Then the daily guard runs."""
        if where != ACCOUNT and self.granted not in (where, "*"):
            return
        images = sorted(self._images(), key=lambda i: i.digest)
        self._run_service(where, images[index % len(images)].digest)
        self.runtimes_changed = True
        self.built.application.guard()

    def _run_service(self, where: str, digest: str) -> None:
        name = f"svc{len(self.running)}"
        ecs = (boto3.client("ecs", region_name="us-east-1") if where == ACCOUNT
               else entered(where).client("ecs", region_name="us-east-1"))
        ecs.create_cluster(clusterName=self.name)
        image_uri = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{self.name}@{digest}"
        definition = ecs.register_task_definition(family=f"{self.name}-{name}", containerDefinitions=[
            {"name": name, "image": image_uri, "memory": 256}])["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=self.name, serviceName=name, taskDefinition=definition, desiredCount=1)
        self.running[(where, name)] = digest

    @rule(data=st.data())
    def stop_runtime(self, data):
        if not self.running:
            return
        where, name = data.draw(st.sampled_from(sorted(self.running)))
        from moto.ecs.models import ecs_backends  # moto still lists a deleted (INACTIVE) service; AWS does not

        ecs_backends[where]["us-east-1"].services.pop(f"{self.name}:{name}")
        del self.running[(where, name)]
        self.runtimes_changed = True
        self.built.application.guard()

    @rule(who=st.sampled_from((None, WORKLOAD, STRANGER, "*")))
    def grant_pull(self, who):
        client = ecr()
        if who is None:
            if self.granted is not None:
                client.delete_repository_policy(repositoryName=self.name)
        else:
            principal = "*" if who == "*" else {"AWS": f"arn:aws:iam::{who}:root"}
            client.set_repository_policy(repositoryName=self.name, policyText=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow", "Principal": principal,
                                                        "Action": ["ecr:BatchGetImage",
                                                                   "ecr:GetDownloadUrlForLayer"]}]}))
        self.granted = who

    @rule(user=st.sampled_from((ADMIN,) + USERS))
    def adopt_copied_with_the_keep_rule_below(self, user):
        self._adopt(user, COPIED)

    @rule(force=st.booleans())
    def adopt_then_roll_back(self, force):
        """An admin adopts the base policy (pinning what runs) and rolls back at once: the restored policy now
        counts the pins (a team's "keep 2 tagged" selects one more tagged image, an archive rule the running
        image itself)."""
        self._adopt(ADMIN, None)
        self.rollback(ADMIN, force)

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
            claim_id, _ = self.built.services.claims.claim_ownership(self.ref, claimer)
        except HasOwners:
            assert self.owner is not None
            return
        assert self.owner is None
        try:
            change = self.built.services.claims.decide_claim(claim_id, True, actor(approver))
        except NotAnAdmin:
            assert approver != ADMIN
            return
        assert approver == ADMIN and change.decision.action == "claimed"
        self.owner = claimer

    @rule(user=st.sampled_from(USERS + (ADMIN,)))
    def try_to_delete(self, user):
        with pytest.raises(PolicyOperationError) as refused:
            self.built.services.deletion.delete_repository(self.ref, actor(user))
        assert isinstance(refused.value, NotAnOwner) != self._allowed(user)

    @rule(user=st.sampled_from(USERS + (ADMIN,)), force=st.booleans())
    def rollback(self, user, force):
        depth = len(self.changes.undo_stack(self.ref.arn))
        edited = depth > 0 and not same_document(self.live, self.bot_last_put)  # changed by hand since
        try:
            change = self.changes.rollback(self.ref, actor(user), force=force, despite_in_use=force)  # as --force
        except NotAnOwner:
            assert not self._allowed(user)
            return
        except HandEdited:
            assert edited and not force and self._allowed(user)
            return
        except HarmsInUse as refused:  # the restored policy would expire or archive an image that runs
            assert not force and self._allowed(user) and (not edited or force)
            restored = self.built.store.backup(self.changes.undo_stack(self.ref.arn)[-1].backup_id)[1]
            assert self._harmed(restored), refused.images
            return
        assert self._allowed(user)
        if change.decision is None:
            assert depth == 0
            return
        assert not edited or force  # never over a hand edit without force
        self.live = self.bot_last_put = change.decision.policy_after
        self.stack_depth = depth - 1
        self.forced = bool(self._harmed(self.live))
        assert force or not self.forced  # only a forced rollback puts a policy that expires a running image
        self.runtimes_changed = False

    @rule(text=st.sampled_from(HAND_EDITS + [None]))
    def hand_edit(self, text):
        if text is not None:  # the archive transition too: moto's validation is patched to accept it, as AWS does
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
            self.forced = self.runtimes_changed = False

    @invariant()
    def aws_holds_what_the_model_expects(self):
        if hasattr(self, "built"):
            assert live_policy(self.name) == self.live
            tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=self.ref.arn)["tags"]}
            assert tags.get("owner") == self.owner

    @invariant()
    def no_policy_the_bot_put_expires_a_running_image_unless_forced(self):
        """The bot's adopted (protected) policy keeps every running image it can see, the guard pinning new
        ones; a restored policy did when it was put (later runtimes are the guard's at_risk, not a write)."""
        if hasattr(self, "built") and self.bot_last_put is not None and self.live == self.bot_last_put \
                and not self.forced and (PIN_PREFIX in self.live or not self.runtimes_changed):
            assert self._harmed(self.live) == []

    @invariant()
    def the_original_is_always_restorable(self):
        if hasattr(self, "built"):
            stack = self.changes.undo_stack(self.ref.arn)
            assert len(stack) == self.stack_depth
            if stack:
                had, text = self.built.store.backup(stack[0].backup_id)
                assert (text if had else None) == self.bottom


@pytest.mark.slow
def test_adoption_promises_hold_over_random_sequences(aws, tmp_path, monkeypatch):
    from moto.ecr import policy_validation
    from moto.moto_api import state_manager

    AdoptionMachine.db_dir = tmp_path
    # AWS accepts archive transitions; moto's lifecycle validation does not (ECR_FACTS.md §5)
    monkeypatch.setattr(policy_validation, "VALID_ACTION_PROPERTIES", {"type", "targetStorageClass"})
    monkeypatch.setattr(policy_validation, "VALID_ACTION_TYPE_VALUES", {"expire", "transition"})
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    monkeypatch.setenv("ECR_COST_ACCOUNTS", ACCOUNT)  # the registry; runtimes are read wherever the bot enters
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", role_arn(WORKLOAD))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    # workloads run in us-east-1 only; a second region keeps runtimes read across regions. Every region enabled
    # (the default, tested in test_in_use_safety.py) was 70 runtime reads per guard and most of this test's time
    monkeypatch.setenv("ECR_COST_RUNTIME_REGIONS", "us-east-1,eu-west-1")
    run_state_machine_as_test(AdoptionMachine, settings=settings(
        max_examples=8, stateful_step_count=14, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.parametrize("original", [TEAM_STAR, ARCHIVE])
def test_the_machine_meets_a_rollback_the_pins_make_harmful(aws, tmp_path, monkeypatch, original):
    """The sequence the random search may take long to find, run through the same machine: the oldest image runs,
    an admin adopts and rolls back; the restored policy would expire (keep 2 tagged: the pin makes it tagged) or
    archive it, so the rollback is refused; forced, it restores byte for byte and the model records it forced."""
    from moto.ecr import policy_validation
    from moto.moto_api import state_manager

    AdoptionMachine.db_dir = tmp_path
    monkeypatch.setattr(policy_validation, "VALID_ACTION_PROPERTIES", {"type", "targetStorageClass"})
    monkeypatch.setattr(policy_validation, "VALID_ACTION_TYPE_VALUES", {"expire", "transition"})
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    monkeypatch.setenv("ECR_COST_ACCOUNTS", ACCOUNT)
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", role_arn(WORKLOAD))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    # workloads run in us-east-1 only; a second region keeps runtimes read across regions. Every region enabled
    # (the default, tested in test_in_use_safety.py) was 70 runtime reads per guard and most of this test's time
    monkeypatch.setenv("ECR_COST_RUNTIME_REGIONS", "us-east-1,eu-west-1")
    machine = AdoptionMachine()
    try:
        machine.create(original, USERS[0], True)
        machine.adopt_then_roll_back(False)
        assert machine.stack_depth == 1 and machine.live == machine.bot_last_put  # refused: still adopted
        machine.no_policy_the_bot_put_expires_a_running_image_unless_forced()
        machine.rollback(ADMIN, True)
        assert machine.stack_depth == 0 and machine.forced and live_policy(machine.name) == original
        machine.aws_holds_what_the_model_expects()
        machine.the_original_is_always_restorable()
    finally:
        machine.teardown()
