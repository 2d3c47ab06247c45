"""Organisation benchmark: `ecr-cost-bot scan` over a simulated AWS Organization, against the API floor.

    python bench/org_bench.py [--accounts 300 --regions 3 --repos 10] [--memory-accounts 100]

A moto server runs in this process on 127.0.0.1 (nothing else is contacted). It creates an organisation
of ACCOUNTS member accounts (plus the management account, which holds nothing), each with REPOS
repositories of 3 images in each of REGIONS regions, written straight into moto's backends. Then, each as
its own process:

  a. `ecr-cost-bot scan` with ECR_COST_ORG_ROLE_NAME: Organizations, STS into every account, all regions
  b. the API floor (below): plain boto3, 16 threads, the account list given, only the calls a scan needs

It prints wall time, API calls and peak RSS of both, their ratios, and the scan's peak RSS for a second,
smaller organisation (--memory-accounts): memory should stay flat in the number of accounts.

Why the floor is what a good engineer would write: one boto3 Session for the whole run (boto3's documentation warns
that a session is costly to create: each parses the service models again) and a client per account and region made
from it with that account's assumed-role credentials; 16 threads; only the calls a scan needs (describe_repositories,
describe_images, get_lifecycle_policy, list_tags_for_resource, batch_get_image). An earlier floor made a Session per
account, which cost it 1.4x the time and 4x the memory, and flattered the bot.

Targets: the scan within 1.2x the floor's time; its peak RSS growing by at most 10% from 100 to 300 accounts.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan_bench import SCAN_LINE, aws_environment, moto_server, run  # noqa: E402 (needs bench/ on sys.path)

from bot.sample import MB, SampleRepository, blob, image  # noqa: E402 (needs the repo root on sys.path)

ROLE = "EcrCostReader"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1")
MANAGEMENT = "123456789012"  # moto's default account: the organisation's management account

FLOOR = r'''
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

accounts, regions, role = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
config = Config(max_pool_connections=20)
calls, lock = [0], threading.Lock()
def count(**_):
    with lock:
        calls[0] += 1
shared, making = boto3.Session(), threading.Lock()  # one session: the service models parsed once
def client(service, region, creds=None):
    keys = {} if creds is None else dict(aws_access_key_id=creds["AccessKeyId"],
                                         aws_secret_access_key=creds["SecretAccessKey"],
                                         aws_session_token=creds["SessionToken"])
    with making:  # a boto3 session is not thread-safe; its clients are
        made = shared.client(service, region_name=region, config=config, **keys)
    made.meta.events.register("before-send", count)
    return made
sts = client("sts", regions[0])
def account(account_id):
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="floor")["Credentials"]
    stored = 0
    for region in regions:
        ecr = client("ecr", region, creds)
        for repo in ecr.describe_repositories(maxResults=1000)["repositories"]:
            name = repo["repositoryName"]
            digests = [i["imageDigest"] for i in ecr.describe_images(repositoryName=name, maxResults=1000,
                                                                      filter={"imageStatus": "ANY"})["imageDetails"]]
            try:
                ecr.get_lifecycle_policy(repositoryName=name)
            except ecr.exceptions.LifecyclePolicyNotFoundException:
                pass
            ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])
            blobs = {}
            for image in ecr.batch_get_image(repositoryName=name,
                                             imageIds=[{"imageDigest": d} for d in digests])["images"]:
                doc = json.loads(image["imageManifest"])
                for d in (doc.get("config"), *doc.get("layers", ())):
                    blobs[d["digest"]] = d["size"]
            stored += sum(blobs.values())
    return stored
with ThreadPoolExecutor(max_workers=16) as pool:
    stored = sum(pool.map(account, accounts))
print(json.dumps({"stored_bytes": stored, "api_calls": calls[0]}))
'''


def organisation(endpoint: str, accounts: int, regions: tuple[str, ...], repos: int) -> list[str]:
    """Creates the organisation and fills every member account's regions; returns the member account IDs."""
    from moto.ecr.models import Image, ecr_backends

    org = boto3.client("organizations", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="bench",
                       aws_secret_access_key="bench")
    org.create_organization(FeatureSet="ALL")
    ids = [org.create_account(AccountName=f"team-{n:04d}", Email=f"team-{n}@example.com")["CreateAccountStatus"]
           ["AccountId"] for n in range(accounts)]
    base = [blob("org-base", 20 * MB), blob("org-runtime", 8 * MB)]
    pushed = int(datetime.now(UTC).timestamp()) - 86_400
    for account_id in ids:
        for region in regions:
            backend = ecr_backends[account_id][region]
            for r in range(repos):
                name = f"svc-{r:02d}"
                repository = SampleRepository(region, name, [
                    image(base + [blob(f"{account_id}-{region}-{name}-{i}", (i + 1) * MB)],
                          blob(f"{account_id}-{region}-{name}-cfg-{i}", 600), (f"v{i}",), pushed_days_ago=i)
                    for i in range(3)])
                stored = backend.create_repository(repository_name=name, registry_id=None, encryption_config=None,
                                                   image_scan_config=None, image_tag_mutability=None,
                                                   tags=[{"Key": "owner", "Value": "U0BENCH01"}])
                for img in repository.all_images():
                    moto_image = Image(account_id, img.tags[0], img.manifest, name, img.media_type, img.digest)
                    moto_image.image_pushed_at = pushed
                    stored.images.append(moto_image)
    return ids


def scan(env: dict, db: str, expected: int):
    result = run([sys.executable, "-m", "bot", "scan", "--format", "json"],
                 {**env, "ECR_COST_DB": db, "ECR_COST_ORG_ROLE_NAME": ROLE})
    line = SCAN_LINE.search(result.stderr)
    if result.returncode != 0 or line is None:
        sys.exit(f"scan failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    if report["summary"]["repository_count"] != expected or report["errors"]:
        sys.exit(f"scan saw {report['summary']['repository_count']} repositories, expected {expected}; "
                 f"errors: {report['errors'][:3]}")
    return result, report, int(line[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--memory-accounts", type=int, default=100)
    args = parser.parse_args()
    regions = REGIONS[:args.regions]
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="ecr-org-bench-") as tmp:
        env = {**aws_environment(endpoint), "ECR_COST_REGIONS": ",".join(regions)}
        figures = {}
        for accounts in (args.memory_accounts, args.accounts):
            started = time.perf_counter()
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
            ids = organisation(endpoint, accounts, regions, args.repos)
            print(f"organisation of {accounts} accounts x {len(regions)} regions x {args.repos} repositories "
                  f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            expected = accounts * len(regions) * args.repos
            bot, report, bot_calls = scan(env, str(Path(tmp) / f"org-{accounts}.db"), expected)
            floor = run([sys.executable, "-c", FLOOR, json.dumps(ids), json.dumps(list(regions)), ROLE], env)
            if floor.returncode != 0:
                sys.exit(f"floor failed:\n{floor.stderr[-3000:]}")
            floor_out = json.loads(floor.stdout)
            assert floor_out["stored_bytes"] == report["summary"]["stored_bytes"], "the floor and the scan disagree"
            figures[accounts] = {
                "repositories": expected,
                "scan_seconds": round(bot.seconds, 1), "floor_seconds": round(floor.seconds, 1),
                "time_ratio": round(bot.seconds / floor.seconds, 2),
                # client CPU (each process's own): steadier than wall time on a shared machine
                "scan_cpu_seconds": round(bot.cpu_seconds, 1), "floor_cpu_seconds": round(floor.cpu_seconds, 1),
                "cpu_ratio": round(bot.cpu_seconds / floor.cpu_seconds, 2),
                "scan_api_calls": bot_calls, "floor_api_calls": floor_out["api_calls"],
                "extra_calls": bot_calls - floor_out["api_calls"],
                # to 0.1 MB: whole MB would turn e.g. 78.4 -> 85.6 MB (+9.2%) into 78 -> 86 (+10.3%)
                "scan_peak_rss_mb": round(bot.peak_rss_mb, 1), "floor_peak_rss_mb": round(floor.peak_rss_mb, 1),
            }
            print(json.dumps({accounts: figures[accounts]}), file=sys.stderr)
        small, large = figures[args.memory_accounts], figures[args.accounts]
        print(json.dumps({"organisations": figures,
                          "rss_growth": round(large["scan_peak_rss_mb"] / small["scan_peak_rss_mb"], 3),
                          "targets": "time_ratio <= 1.2 at each size; rss_growth <= 1.10",
                          "account_growth": round(args.accounts / args.memory_accounts, 2)}, indent=2))


if __name__ == "__main__":
    main()
