"""The schema: sqlite-utils migrations, applied in this order once per database (names are recorded: never rename
one, add the next)."""
from __future__ import annotations

from .sqlite import Database, Migrations

migrations = Migrations("ecr_cost_bot")


@migrations()
def m001_inventory(db: Database) -> None:
    db.table("scans").create({
        "id": int, "generated_at": str, "finished_at": str, "status": str, "price_per_gb_month": float,
        "partial": int, "errors": str, "warnings": str, "repository_count": int, "stored_bytes": int,
        "monthly_cost_usd": float, "api_calls": int, "manifests_fetched": int,
    }, pk="id")
    db.table("repository_snapshots").create({
        "scan_id": int, "arn": str, "account_id": str, "region": str, "repository": str,
        "image_count": int, "tagged_image_count": int, "stored_bytes": int, "listed_bytes": int,
        "monthly_cost_usd": float, "last_pushed_at": str, "last_pulled_at": str, "unused": int,
        "has_lifecycle_policy": int, "lifecycle_policy": str, "owners": str, "tags": str,
    }, pk=("scan_id", "arn"), foreign_keys=[("scan_id", "scans", "id")])
    db.table("repository_snapshots").create_index(["arn", "scan_id"])
    # the image list of a snapshot, kept for the latest scans only (the policy preview reads it)
    db.table("snapshot_images").create({"scan_id": int, "arn": str, "images": str}, pk=("scan_id", "arn"))
    # manifests are immutable per digest: one row per digest, ever
    db.table("manifests").create({
        "digest": str, "media_type": str, "blobs": str, "children": str, "problem": str, "fetched_at": str,
    }, pk="digest")


@migrations()
def m002_policy_changes(db: Database) -> None:
    # the policy text as it was before the bot overwrote it; policy_text NULL = there was none
    db.table("policy_backups").create({
        "id": int, "arn": str, "account_id": str, "region": str, "repository": str, "had_policy": int,
        "policy_text": str, "taken_at": str, "reason": str,
    }, pk="id")
    db.table("policy_backups").create_index(["arn", "id"])
    db.table("decisions").create({
        "id": int, "arn": str, "account_id": str, "region": str, "repository": str, "action": str, "user_id": str,
        "source": str, "at": str, "policy_before": str, "policy_after": str,
        "projected_monthly_savings_usd": float, "backup_id": int,
    }, pk="id", foreign_keys=[("backup_id", "policy_backups", "id")])
    db.table("decisions").create_index(["arn", "id"])


@migrations()
def m003_slack_clicks(db: Database) -> None:
    # one row per Slack interaction handled: a redelivered click is recognised and ignored
    db.table("slack_clicks").create({"click_id": str, "claimed_at": str}, pk="click_id")


@migrations()
def m004_report_runs(db: Database) -> None:
    # one row per report period, claimed before posting: exactly one report per period
    db.table("report_runs").create({"period": str, "claimed_by": str, "claimed_at": str, "status": str,
                              "message_ts": str, "finished_at": str, "error": str}, pk="period")
    # one direct message per repository per owner per period
    db.table("nudges").create({"period": str, "arn": str, "user_id": str, "sent_at": str},
                        pk=("period", "arn", "user_id"))


@migrations()
def m005_trust(db: Database) -> None:
    # who a change was authorised against, and which adoption a rollback undid (the undo stack)
    db.table("decisions").add_column("owners_checked", str)
    db.table("decisions").add_column("undoes", int)
    # one change per repository at a time, across processes sharing the store
    db.table("repository_claims").create({"arn": str, "holder": str, "claimed_at": str}, pk="arn")
    # a scan's holder and heartbeat: a scan whose holder died is recognised and abandoned
    db.table("scans").add_column("holder", str)
    db.table("scans").add_column("heartbeat_at", str)


@migrations()
def m006_in_use(db: Database) -> None:
    # ECS task definitions are immutable per revision ARN: their container images, read once, ever
    db.table("task_definitions").create({"arn": str, "images": str, "fetched_at": str}, pk="arn")


@migrations()
def m007_repository_generation(db: Database) -> None:
    # a repository deleted and created again has the same ARN: its creation time keeps their histories apart
    db.table("decisions").add_column("repository_created_at", str)


@migrations()
def m008_owner_decisions(db: Database) -> None:
    # a decline's reason and the person's note; what a claim or a deletion did
    db.table("decisions").add_column("reason", str)
    db.table("decisions").add_column("note", str)
    # a deleted repository's export (every image's digest, tags, times and manifest), kept before the deletion
    db.table("repository_exports").create({"id": int, "arn": str, "account_id": str, "region": str, "repository": str,
                                     "user_id": str, "taken_at": str, "content": str}, pk="id")
    # "I own this": a claim waits for an admin's approval
    db.table("ownership_claims").create({"id": int, "arn": str, "account_id": str, "region": str, "repository": str,
                                   "claimer": str, "claimed_at": str, "status": str, "decided_by": str,
                                   "decided_at": str}, pk="id")
    db.table("ownership_claims").create_index(["arn", "status"])


@migrations()
def m009_config_steps(db: Database) -> None:
    # image config blobs are immutable per digest: the Dockerfile step of each layer (their history), read once, ever;
    # steps NULL with a problem: the blob could not be used (too large, no history), which will not change either
    db.table("config_steps").create({"digest": str, "steps": str, "problem": str, "fetched_at": str}, pk="digest")


@migrations()
def m010_billing_cache(db: Database) -> None:
    # Cost Explorer charges each request and the CUR is large: one answer per source and period per UTC day
    db.table("billing_cache").create({"key": str, "day": str, "payload": str, "fetched_at": str}, pk="key")


@migrations()
def m011_account_names(db: Database) -> None:
    # a repository's account, by its name in the AWS Organization (null outside one)
    db.table("repository_snapshots").add_column("account_name", str)


@migrations()
def m015_watch(db: Database) -> None:
    # the watch: a repository's createdAt tells the repositories created since the previous scan
    db.table("repository_snapshots").add_column("created_at", str)
    # a watch finding sent to a person: at most once per period (key: kind and repository)
    db.table("watch_findings").create({"period": str, "finding": str, "user_id": str, "sent_at": str},
                                pk=("period", "finding", "user_id"))
    # a limit set through the bot: the tag value before and after (undo restores the one before; null: none)
    db.table("decisions").add_column("tag_before", str)
    db.table("decisions").add_column("tag_after", str)


@migrations()
def m016_sweep(db: Database) -> None:
    # a sweep decision's images (digest, tags, manifest, times, size, outcome), recorded before they are deleted
    db.table("decisions").add_column("images", str)
    # sweep candidates announced to their owners: deleted only once the grace period since then has passed
    db.table("sweep_announcements").create({"arn": str, "digest": str, "batch": str, "announced_at": str},
                                     pk=("arn", "digest"))
    db.table("sweep_announcements").create_index(["batch"])


@migrations()
def m017_scan_scope(db: Database) -> None:
    # what a scan covered (regions, roles, organisation, account filters): a report reuses only a scan of the
    # estate as configured now
    db.table("scans").add_column("scope", str)
