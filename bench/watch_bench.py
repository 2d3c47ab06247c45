"""How long the daily watch takes, and what memory it needs, against the scan of the same estate.

    python bench/watch_bench.py [--sizes 1000 10000] [--images 5]

For each size: an estate of N repositories is written into moto's backend (see scan_bench.py) and scanned by
`ecr-cost-bot scan` as its own process; then 1% of the repositories get a push with a 1.5 GB layer (they grow), 1%
get an `ecr-cost-limit-usd` tag below their cost (over their limit), 0.5% are created without a policy (new), and
the estate is scanned again: two scans in the store. The watch then runs in this process on that store (no AWS: the
creators come from the owner tag, CloudTrail being unreachable on moto) and is timed against the second scan (the
baseline, measured in this run); its peak Python memory is traced (tracemalloc) against what loading the two scans'
rows alone takes: the watch reads one repository's images at a time, so the rest must stay flat.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scan_bench import ACCOUNT, REGION, aws_environment, build_estate, ecr_cost_bot_scan, load, moto_server  # noqa: E402

from bot.sample import MB, SampleRepository, blob, correct_moto, image, push  # noqa: E402


def change_between_scans(estate: list[SampleRepository], endpoint: str) -> tuple[int, int, int]:
    """(repositories grown, put over a limit, created): through the ECR API, as people would."""
    import boto3

    client = boto3.client("ecr", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="bench",
                          aws_secret_access_key="bench")
    grown = estate[::100]
    pushed = []
    for repo in grown:
        big = image([blob(f"{repo.name}/huge", 1536 * MB)], blob(f"{repo.name}/huge-cfg", 5_000), ("huge",),
                    pushed_days_ago=0)
        client.put_image(repositoryName=repo.name, imageManifest=big.manifest, imageManifestMediaType=big.media_type,
                         imageDigest=big.digest, imageTag="huge")
        pushed.append(SampleRepository(REGION, repo.name, [big]))
    correct_moto(ACCOUNT, pushed, datetime.now(UTC))
    limited = estate[50::100]
    for repo in limited:
        arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo.name}"
        client.tag_resource(resourceArn=arn, tags=[{"Key": "ecr-cost-limit-usd", "Value": "0.0001"}])
    created = [SampleRepository(REGION, f"new/service-{n:04d}", [
        image([blob(f"new-{n}/app", 20 * MB)], blob(f"new-{n}/cfg", 900), ("v1",), pushed_days_ago=0)],
        {"owner": "U0NEWTEAM1"}) for n in range(len(estate) // 200)]
    for repo in created:
        push(client, repo)
    correct_moto(ACCOUNT, created, datetime.now(UTC))
    return len(grown), len(limited), len(created)


PROFILE = False


def run_watch(db_path: str, env: dict) -> tuple[float, float, float, object]:
    """(watch seconds, watch peak MB, peak MB of loading the two scans alone, the result) on the bench's store."""
    from bot.config import load_settings
    from bot.wiring import build

    settings = load_settings({**env, "ECR_COST_DB": db_path})
    # no credentials in this process: CloudTrail fails at once (no instance-metadata lookups), and the owner tag
    # names the creators; moto has no LookupEvents to answer it anyway
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                      AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    components = build(settings)
    try:
        store = components.store
        tracemalloc.start()
        latest = store.latest_scan()
        components.watch.previous(latest)
        rows_peak = tracemalloc.get_traced_memory()[1] / 2**20
        del latest
        tracemalloc.stop()
        tracemalloc.start()
        started = time.perf_counter()
        if PROFILE:
            import cProfile
            import pstats
            profiler = cProfile.Profile()
            result = profiler.runcall(components.watch.watch, read_steps=False)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            result = components.watch.watch(read_steps=False)
        seconds = time.perf_counter() - started
        watch_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    finally:
        components.close()
    return seconds, watch_peak, rows_peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print where the watch spends its time")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    print(f"{'repositories':>12}  {'scan s':>7}  {'watch s':>7}  {'watch/scan':>10}  {'rows MB':>7}  "
          f"{'watch MB':>8}  {'grown':>5}  {'over':>5}  {'new':>5}")
    with moto_server() as endpoint:
        env = aws_environment(endpoint)
        for size in args.sizes:
            estate = build_estate(size, args.images)
            load(estate, endpoint, "direct")
            with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
                db_path = f"{tmp}/bench.db"
                ecr_cost_bot_scan(env, db_path, size)
                grown, limited, created = change_between_scans(estate, endpoint)
                scan = ecr_cost_bot_scan(env, db_path, size + created)
                seconds, watch_peak, rows_peak, result = run_watch(db_path, env)
            if (len(result.growth), len(result.over_limit), len(result.new_without_policy)) != (grown, limited,
                                                                                                 created):
                sys.exit(f"the watch found {len(result.growth)} grown, {len(result.over_limit)} over their limit, "
                         f"{len(result.new_without_policy)} new; expected {grown}, {limited}, {created}")
            print(f"{size:>12,}  {scan.own_seconds:>7.2f}  {seconds:>7.2f}  {seconds / scan.own_seconds:>9.1%}  "
                  f"{rows_peak:>7.1f}  {watch_peak:>8.1f}  {grown:>5}  {limited:>5}  {created:>5}")


if __name__ == "__main__":
    main()
