"""Faults a hostile review found in the promises, each reproduced and now held: a change whose answer was lost,
a store that fails mid-change, a scan that outlives its lease, two replicas, a stalled report run, a second
hand edit after the first was shown."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.core.lifecycle import fingerprint
from bot.errors import HandEdited, ScanAbandoned
from bot.gate import Actor
from bot.heartbeat import heartbeat
from bot.store import Store
from bot.wiring import build, components
from tests.helpers.aws import CUSTOM, current_policy, ecr, load, repository, run_cli
from tests.helpers.report import PERIOD, posts
from tests.helpers.rows import row

OWNER = Actor("U0SHOP123", "slack", names_me=lambda entry: entry == "U0SHOP123")
H1 = json.dumps({"rules": [{"rulePriority": 3, "description": "console edit one", "selection": {
    "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 3}, "action": {"type": "expire"}}]})
H2 = H1.replace("console edit one", "console edit two")


def test_a_put_that_took_effect_but_answered_an_error_stays_undoable(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan")[0] == 0
    forward = aws._forward

    def lost_answer(request, body):
        status, headers, payload = forward(request, body)
        if (request.headers.get("X-Amz-Target") or "").endswith("PutLifecyclePolicy"):
            return 400, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(
                {"__type": "InvalidParameterException", "message": "an answer that lies"}).encode()
        return status, headers, payload

    aws._forward = lost_answer
    try:
        code, _, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    finally:
        aws._forward = forward
    assert code == 1 and "yet the change is in AWS" in err
    assert current_policy() != CUSTOM
    assert run_cli(capsys, "policy", "rollback", "shop", "--yes")[0] == 0
    assert current_policy() == CUSTOM  # the original was never lost


def test_a_store_that_fails_before_the_put_changes_nothing(aws, capsys, monkeypatch):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan")[0] == 0

    def locked(self, decision):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "record_decision", locked)
    code, _, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 1 and "database is locked" in err
    assert current_policy() == CUSTOM  # the decision comes first: without it, AWS is not touched


def test_roll_back_anyway_overwrites_only_the_edit_that_was_shown(aws, capsys):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as built:
        _, shop = built.application.find("shop")
        built.application.adopt(shop, OWNER)
        ecr().put_lifecycle_policy(repositoryName="shop", lifecyclePolicyText=H1)
        with pytest.raises(HandEdited) as shown:
            built.application.rollback(shop, OWNER)
        assert shown.value.live == H1
        ecr().put_lifecycle_policy(repositoryName="shop", lifecyclePolicyText=H2)  # edited again meanwhile
        with pytest.raises(HandEdited) as again:
            built.application.rollback(shop, OWNER, force=True, over=fingerprint(H1))
        assert again.value.live == H2 and current_policy() == H2  # shown again, not overwritten unseen
        assert built.application.rollback(shop, OWNER, force=True, over=fingerprint(H2)).decision is not None
        assert current_policy() == CUSTOM


def test_a_scan_marked_abandoned_can_never_complete(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    try:
        scan_id = store.begin_scan(datetime.now(UTC), 0.1)
        store.save_repository(scan_id, row("a", 10), [])
        store.abandon_scans([scan_id])  # e.g. a sweep that thought it dead
        with pytest.raises(ScanAbandoned):
            store.save_repository(scan_id, row("b", 10), [])
        assert not store.heartbeat_scan(scan_id)
        assert store.latest_scan() is None
        assert store.db["repository_snapshots"].count == 0
    finally:
        store.close()


def test_a_live_scan_of_another_container_with_the_same_host_name_is_not_abandoned(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    try:
        now = datetime.now(UTC).isoformat()
        for pid in ("1", "999999999"):  # PID 1 of another container; a PID that does not exist here
            with store.db.conn:
                store.db["scans"].insert({"generated_at": now, "status": "running", "heartbeat_at": now,
                                          "holder": f"{socket.gethostname()}:{pid}:other:4026532999"})
        assert store.abandon_dead_scans() == []
    finally:
        store.close()


def test_two_replicas_asking_at_once_cause_one_scan(aws, capsys, settings):
    load([repository()])
    first, second = build(load_settings()), build(load_settings())
    try:
        start, answers = threading.Barrier(2), []

        def ask(built):
            start.wait(timeout=10)
            answers.append(built.application.latest())

        threads = [threading.Thread(target=ask, args=(b,)) for b in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(answers) == 2 and answers[0].scan_id == answers[1].scan_id
        assert len(list(first.store.db["scans"].rows)) == 1
    finally:
        first.close()
        second.close()


def test_a_change_claim_is_kept_alive_while_its_holder_works(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    try:
        assert store.claim("arn:x", "worker")
        with heartbeat(lambda: store.refresh_claim("arn:x", "worker"), 0.05):
            claimed = store.db.execute("select claimed_at from repository_claims").fetchone()[0]
            deadline = datetime.now(UTC) + timedelta(seconds=5)
            while store.db.execute("select claimed_at from repository_claims").fetchone()[0] == claimed:
                assert datetime.now(UTC) < deadline
                threading.Event().wait(0.02)
            assert not store.claim("arn:x", "thief", lease=timedelta(seconds=1))
    finally:
        store.close()


def test_a_heartbeat_survives_a_failing_beat():
    beats, done = [], threading.Event()

    def beat():
        beats.append(1)
        if len(beats) == 1:
            raise sqlite3.OperationalError("database is locked")
        if len(beats) >= 3:
            done.set()
        return True

    with heartbeat(beat, 0.01):
        assert done.wait(timeout=5)  # beats went on after the failure


# -- the report, against the Slack stand-in (the job_parts fixture) --------------------------------------


def test_a_run_that_crashed_is_resumed_at_start_up(job_parts):
    make_job, standin, store, _ = job_parts
    long_ago = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    with store.db.conn:
        store.db["report_runs"].insert({"period": PERIOD, "claimed_by": "crashed:1:x:y", "claimed_at": long_ago,
                                        "status": "claimed"})
    assert "posted (ts" in make_job().catch_up()
    assert len(posts(standin, "C0REPORTS")) == 1


def test_a_run_that_stalled_past_a_takeover_does_not_post(job_parts):  # noqa: F811 - the imported fixture
    make_job, standin, store, _ = job_parts
    stalled_scan = make_job()._scan_now

    def stall_then_scan():
        assert store.claim_period(PERIOD, "replica:2:x:y", lease=timedelta(0)) == "taken over"  # A looked dead
        return stalled_scan()

    outcome = make_job(scan_now=stall_then_scan).run()
    assert "taken over by another run" in outcome and posts(standin, "C0REPORTS") == []
    assert store.period_run(PERIOD)["claimed_by"] == "replica:2:x:y"  # the new holder's claim stands


def test_only_the_holder_gives_a_claim_back(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    try:
        assert store.claim_period(PERIOD, "a") == "new"
        assert store.claim_period(PERIOD, "b", lease=timedelta(0)) == "taken over"
        store.release_period(PERIOD, "a")  # A's scan failed after B took over
        assert store.period_run(PERIOD)["claimed_by"] == "b"
        assert store.claim_period(PERIOD, "c") is None
    finally:
        store.close()


def test_the_environment_cannot_reach_the_tests():
    assert not any(os.environ.get(name) for name in ("HTTP_PROXY", "HTTPS_PROXY", "SLACK_BOT_TOKEN"))


def test_a_repository_deleted_and_created_again_starts_a_history_of_its_own(aws, capsys):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    ecr().delete_repository(repositoryName="shop", force=True)
    load([repository()])  # the same name, hence the same ARN, and no policy
    assert run_cli(capsys, "scan")[0] == 0
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    assert run_cli(capsys, "policy", "rollback", "shop", "--yes")[0] == 0
    assert current_policy() is None  # the new repository's own "before"
    code, _, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 1 and "nothing to roll back" in err
    assert current_policy() is None  # never the deleted repository's policy
