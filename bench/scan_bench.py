"""Scan benchmark: `ecr-cost-bot scan` against the playbook's AWS CLI loop and the API floor, on moto.

    python bench/scan_bench.py [--repos 300 --images 30] [--populate api|direct]
    python bench/scan_bench.py --memory

Runs a moto server in this process on 127.0.0.1 (nothing else is contacted), builds an estate of
repositories with shared base layers (bot.sample), then times each contender as its own process:

  a. `ecr-cost-bot scan --format json` on an empty store (every manifest fetched)
  b. the playbook: one `aws ecr describe-images` process per repository, summing imageSizeInBytes
  c. bench/api_floor.py: only the API calls a correct first scan needs, plain boto3, 16 threads
  d. `ecr-cost-bot scan` again on the same store (manifests from the cache)

--memory instead scans three larger estates (populated straight into moto's backend) and reports
the scan process's peak RSS, and how it grows per image and per repository.

Peak RSS is measured through /usr/bin/time (or a tiny Python wrapper): see peak_rss_wrapper.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import shipped_base_policy_text  # noqa: E402 (needs the repo root on sys.path)
from bot.sample import MB, OCI_MANIFEST, SampleImage, SampleRepository, blob, correct_moto, image, index, push  # noqa: E402 (needs the repo root on sys.path)

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
PAGE_SIZE = 1000  # what the bot asks ECR for; describe pages are counted with it
MULTI_ARCH_EVERY = 20  # one repository in 20 pushes amd64+arm64 indexes
POLICY_EVERY = 3  # one repository in 3 has a lifecycle policy
PUSH_WORKERS = 4
SCAN_TIMEOUT = 600  # seconds, per process
CLI_TIMEOUT = 60

SCAN_LINE = re.compile(r"scanned (\d+) repositories in ([\d.]+) s: (\d+) API requests, (\d+) manifests fetched")
# --memory estates, (repositories, images per repository): a baseline, 10x deeper, 10x wider
BASELINE, DEEPER, WIDER = (100, 50), (100, 500), (1000, 50)


# -- the estate ------------------------------------------------------------------------------

def base_stacks(count: int = 8) -> list[list[tuple[str, int]]]:
    """A few base images (3-4 layers each) that every repository builds on."""
    rng = random.Random("bases")
    return [[blob(f"base-{k}/layer-{j}", rng.randint(2, 80) * MB + rng.randint(0, MB)) for j in range(3 + k % 2)]
            for k in range(count)]


def build_repository(number: int, images: int, stacks) -> SampleRepository:
    """``images`` stored images (manifests, as describe_images counts them): the base stack's layers,
    a deps layer that changes every 10 builds and one app layer unique to each image.
    Every seventh build is untagged; a multi-arch repository's newer builds are indexes over an
    amd64 and an arm64 image (3 manifests per build)."""
    rng = random.Random(number)
    name = f"team-{number % 15:02d}/service-{number:04d}"
    base = stacks[number % len(stacks)]
    indexes = images // 3 if number % MULTI_ARCH_EVERY == MULTI_ARCH_EVERY - 1 else 0
    single = images - 3 * indexes
    builds = single + indexes
    app_mb = rng.randint(5, 200)

    def app_layer(label: str) -> tuple[str, int]:
        return blob(f"{name}/app-{label}", app_mb * MB // 2 + rng.randint(0, app_mb * MB))

    stored: list[SampleImage] = []
    deps = None
    for build in range(builds):
        if build % 10 == 0:
            deps = blob(f"{name}/deps-{build}", rng.randint(5, 120) * MB)
        tags = () if build % 7 == 3 else (f"1.{build // 10}.{build % 10}",)
        if build == builds - 1:
            tags += ("latest",)
        age = (builds - build) * 1.5
        pulled = age / 2 if build % 3 else None
        if build < single:
            stored.append(image(base + [deps, app_layer(str(build))], blob(f"{name}/config-{build}", 6_000 + build),
                                tags, age, pulled))
        else:
            children = [image(base + [deps, app_layer(f"{build}-{arch}")],
                              blob(f"{name}/config-{build}-{arch}", 7_000 + build),
                              media_type=OCI_MANIFEST, pushed_days_ago=age, pulled_days_ago=pulled)
                        for arch in ("amd64", "arm64")]
            stored.append(index(children, tags, age, pulled))
    policy = shipped_base_policy_text() if number % POLICY_EVERY == 0 else None
    return SampleRepository(REGION, name, stored, {"owner": f"U0TEAM{number % 15:03d}", "cost-center": "cc-100"},
                            policy)


def build_estate(repos: int, images: int) -> list[SampleRepository]:
    stacks = base_stacks()
    return [build_repository(number, images, stacks) for number in range(repos)]


@dataclass
class EstateFacts:
    repositories: int
    manifests: int
    unique_blobs: int
    stored_bytes: int  # each blob once per repository: what a correct scan must report
    listed_bytes: int  # sum of imageSizeInBytes: what the playbook reports
    describe_pages: int  # describe_repositories pages + describe_images pages, at PAGE_SIZE


def estate_facts(estate: list[SampleRepository]) -> EstateFacts:
    manifests = stored = listed = 0
    describe_pages = max(1, math.ceil(len(estate) / PAGE_SIZE))
    every_blob: set[str] = set()
    for repo in estate:
        blobs: dict[str, int] = {}
        images = repo.all_images()
        for img in images:
            doc = json.loads(img.manifest)
            for descriptor in (doc.get("config"), *doc.get("layers", ())):
                if descriptor:
                    blobs[descriptor["digest"]] = descriptor["size"]
            listed += img.listed_bytes or 0
        manifests += len(images)
        stored += sum(blobs.values())
        every_blob.update(blobs)
        describe_pages += max(1, math.ceil(len(images) / PAGE_SIZE))
    return EstateFacts(len(estate), manifests, len(every_blob), stored, listed, describe_pages)


# -- moto ------------------------------------------------------------------------------------

@contextmanager
def moto_server():
    """A moto server on a free port of 127.0.0.1, in this process; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # no line per request, nor per unimplemented API
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: the OS picks a free one
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_environment(endpoint: str) -> dict[str, str]:
    """This process's environment without any AWS/bot/Slack settings, pointed at the moto server only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_COST_", "SLACK_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "ECR_COST_REGIONS": REGION,
    })
    return env


def push_via_api(estate: list[SampleRepository], endpoint: str) -> None:
    client = boto3.client("ecr", region_name=REGION, endpoint_url=endpoint)
    with ThreadPoolExecutor(max_workers=PUSH_WORKERS) as pool:
        list(pool.map(lambda repo: push(client, repo), estate))


def populate_directly(estate: list[SampleRepository]) -> None:
    """What `push` does, written straight into moto's backend objects (no HTTP, no per-push scans)."""
    from moto.ecr.models import Image, ecr_backends

    backend = ecr_backends[ACCOUNT][REGION]
    for repo in estate:
        stored = backend.create_repository(
            repository_name=repo.name, registry_id=None, encryption_config=None, image_scan_config=None,
            image_tag_mutability=None, tags=[{"Key": k, "Value": v} for k, v in repo.tags.items()])
        stored.lifecycle_policy = repo.policy
        for img in repo.all_images():
            first, *more = img.tags or (None,)
            moto_image = Image(ACCOUNT, first, img.manifest, repo.name, img.media_type, img.digest)
            for tag in more:
                moto_image.update_tag(tag)
            stored.images.append(moto_image)


def load(estate: list[SampleRepository], endpoint: str, how: str) -> float:
    """Puts the estate into moto and corrects what moto reports; returns the seconds it took."""
    from moto.ecr.models import ecr_backends

    started = time.perf_counter()
    ecr_backends[ACCOUNT][REGION].reset()
    if how == "api":
        push_via_api(estate, endpoint)
    else:
        populate_directly(estate)
    correct_moto(ACCOUNT, estate, datetime.now(UTC))
    return time.perf_counter() - started


# -- running the contenders --------------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    cpu_seconds: float  # user + system time of the process (and its wrapper)
    server_cpu_seconds: float  # this process's CPU meanwhile: the moto server's, as the bench only waits


def run(command: list[str], env: dict[str, str], timeout: float = SCAN_TIMEOUT) -> Run:
    """Runs ``command`` to completion: wall time, CPU time (os.wait4) and peak RSS (see peak_rss_wrapper)."""
    with tempfile.TemporaryDirectory(prefix="ecr-scan-bench-run-") as tmp:
        rss_file = Path(tmp) / "peak-rss"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            server_before = own_cpu_seconds()
            started = time.perf_counter()
            process = subprocess.Popen(peak_rss_wrapper(rss_file) + command, env=env, cwd=ROOT,
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            watchdog = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
            watchdog.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)  # the wrapper's usage includes its child's CPU
            except BaseException:  # Ctrl-C does not reach the process's own session: stop it ourselves
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
            finally:
                watchdog.cancel()
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        peak_kib = int(rss_file.read_text().split()[-1]) if rss_file.exists() else 0
        return Run(seconds, process.returncode, out_path.read_text(), err_path.read_text(),
                   peak_kib / 1024, usage.ru_utime + usage.ru_stime, own_cpu_seconds() - server_before)


GNU_TIME = "/usr/bin/time"
RSS_WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
               "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
               "sys.exit(code)")


def peak_rss_wrapper(rss_file: Path) -> list[str]:
    """A small process that runs the command and writes its peak RSS (KiB) to ``rss_file``.

    Not os.wait4 from here: Linux carries a process's RSS high-water mark across exec, so a child
    spawned by this (large: moto and the estate live here) process reports at least our RSS.
    A small intermediary keeps that inherited mark below the measured process's own."""
    if os.access(GNU_TIME, os.X_OK):
        return [GNU_TIME, "-f", "%M", "-o", str(rss_file)]
    return [sys.executable, "-c", RSS_WRAPPER, str(rss_file)]


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ScanRun:
    run: Run
    report: dict
    own_seconds: float
    api_requests: int
    manifests_fetched: int


def ecr_cost_bot_scan(env: dict[str, str], db_path: str, expected_repos: int) -> ScanRun:
    result = run([sys.executable, "-m", "bot", "scan", "--format", "json"], {**env, "ECR_COST_DB": db_path})
    line = SCAN_LINE.search(result.stderr)
    if result.returncode != 0 or line is None:
        sys.exit(f"ecr-cost-bot scan failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    count = report["summary"]["repository_count"]
    if count != expected_repos or report["errors"]:
        sys.exit(f"ecr-cost-bot scan saw {count} repositories, expected {expected_repos}; "
                 f"errors: {report['errors'][:3]}")
    return ScanRun(result, report, float(line[2]), int(line[3]), int(line[4]))


def aws_cli() -> str:
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if not found:
        sys.exit("the AWS CLI is needed for the playbook baseline: pip install -e '.[bench]'")
    return found


@dataclass
class PlaybookRun:
    seconds: float
    processes: int
    listed_bytes: int
    cpu_seconds: float  # all the CLI processes together
    server_cpu_seconds: float


def playbook(env: dict[str, str]) -> PlaybookRun:
    """The playbook, as its shell loop would run it: list the repositories, then one CLI process each."""
    def cli(*args: str) -> str:
        done = subprocess.run([aws, "ecr", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            sys.exit(f"aws ecr {args[0]} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    aws = aws_cli()
    children_before, server_before = children_cpu_seconds(), own_cpu_seconds()
    started = time.perf_counter()
    names = cli("describe-repositories", "--query", "repositories[].repositoryName", "--output", "text").split()
    total = 0
    for name in names:
        total += int(float(cli("describe-images", "--repository-name", name,
                               "--query", "sum(imageDetails[].imageSizeInBytes)", "--output", "text")))
    return PlaybookRun(time.perf_counter() - started, 1 + len(names), total,
                       children_cpu_seconds() - children_before, own_cpu_seconds() - server_before)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def api_floor(env: dict[str, str]) -> tuple[Run, dict]:
    result = run([sys.executable, str(ROOT / "bench" / "api_floor.py")], env)
    if result.returncode != 0:
        sys.exit(f"api_floor.py failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result, json.loads(result.stdout)


# -- the two modes ---------------------------------------------------------------------------

def speed(args, endpoint: str, env: dict[str, str], workdir: Path) -> None:
    estate = build_estate(args.repos, args.images)
    facts = estate_facts(estate)
    print(f"estate: {facts.repositories:,} repositories, {facts.manifests:,} stored images "
          f"(indexes and their children included), {facts.unique_blobs:,} distinct blobs; "
          f"1 in {MULTI_ARCH_EVERY} multi-arch, 1 in 7 builds untagged, 1 in {POLICY_EVERY} with a lifecycle policy")
    load_seconds = load(estate, endpoint, args.populate)
    how = "pushed through the ECR API" if args.populate == "api" else "written into moto's backend"
    print(f"estate {how} in {load_seconds:.1f} s; moto {moto_version()} server at {endpoint}\n", flush=True)

    db_path = str(workdir / "ecr-cost.db")
    print("a. ecr-cost-bot scan, empty store ...", flush=True)
    cold = ecr_cost_bot_scan(env, db_path, facts.repositories)
    print("b. playbook: aws CLI loop ...", flush=True)
    book = playbook(env)
    print("c. API floor ...", flush=True)
    floor_run, floor = api_floor(env)
    print("d. ecr-cost-bot scan, same store ...\n", flush=True)
    warm = ecr_cost_bot_scan(env, db_path, facts.repositories)

    header = ("", "wall s", "own s", "CPU s", "moto CPU s", "API requests", "manifests", "peak RSS MB")
    rows = [
        ("a. ecr-cost-bot scan, empty store", cold.run.seconds, f"{cold.own_seconds:.2f}", cold.run.cpu_seconds,
         cold.run.server_cpu_seconds, f"{cold.api_requests:,}", f"{cold.manifests_fetched:,}",
         f"{cold.run.peak_rss_mb:.0f}"),
        (f"b. playbook: {book.processes} aws CLI processes", book.seconds, "", book.cpu_seconds,
         book.server_cpu_seconds, f"{book.processes:,}", "0", ""),
        ("c. API floor (boto3, 16 threads)", floor_run.seconds, f"{floor['seconds']:.2f}", floor_run.cpu_seconds,
         floor_run.server_cpu_seconds, f"{floor['api_requests']:,}", f"{floor['manifests_fetched']:,}",
         f"{floor_run.peak_rss_mb:.0f}"),
        ("d. ecr-cost-bot scan, warm store", warm.run.seconds, f"{warm.own_seconds:.2f}", warm.run.cpu_seconds,
         warm.run.server_cpu_seconds, f"{warm.api_requests:,}", f"{warm.manifests_fetched:,}",
         f"{warm.run.peak_rss_mb:.0f}"),
    ]
    print(f"{header[0]:<40}" + "".join(f"{h:>{len(h) + 2}}" for h in header[1:]))
    widths = [len(h) + 2 for h in header[1:]]
    for label, wall, own, cpu, server, requests, manifests, rss in rows:
        cells = [f"{wall:.2f}", own, f"{cpu:.2f}", f"{server:.2f}", requests, manifests, rss]
        print(f"{label:<40}" + "".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True)))
    print("wall s: the whole process as the bench sees it, interpreter start-up included; own s: what the process\n"
          "reports for its work; CPU s: the process's user + system time; moto CPU s: the server's meanwhile\n")

    target = facts.describe_pages + 2 * facts.repositories
    playbook_ratio = book.seconds / cold.run.seconds
    floor_ratio = cold.run.seconds / floor_run.seconds
    print(f"playbook / scan:   {playbook_ratio:6.1f}x   target >= 15x: {verdict(playbook_ratio >= 15)} "
          f"(moto's CPU was busy {cold.run.server_cpu_seconds / cold.run.seconds:.0%} of the scan's wall time)")
    print(f"scan / API floor:  {floor_ratio:6.2f}x   target <= 1.5x: {verdict(floor_ratio <= 1.5)} "
          f"(own seconds: {cold.own_seconds / floor['seconds']:.2f}x)")
    print(f"warm scan:         {warm.api_requests:,} API requests, target {target:,} + 1 = {target + 1:,}: "
          f"{verdict(warm.api_requests <= target + 1)}")
    print(f"                   target = {facts.describe_pages:,} describe pages (describe_repositories + "
          f"describe_images at {PAGE_SIZE} per page) + 2 x {facts.repositories:,} repositories "
          f"(get_lifecycle_policy, list_tags_for_resource);")
    print("                   + 1 allowed for sts GetCallerIdentity, which the scan makes once per account")
    print(f"                   manifests fetched by the warm scan: {warm.manifests_fetched} (expected 0)\n")

    scanned_stored = cold.report["summary"]["stored_bytes"]
    scanned_listed = sum(r["listed_bytes"] for r in cold.report["repositories"])
    print("cross-checks:")
    print(f"  stored bytes: estate {facts.stored_bytes:,}, scan {scanned_stored:,}, floor {floor['stored_bytes']:,}: "
          f"{verdict(facts.stored_bytes == scanned_stored == floor['stored_bytes'], 'agree', 'DIFFER')}")
    print(f"  listed bytes: estate {facts.listed_bytes:,}, scan {scanned_listed:,}, playbook {book.listed_bytes:,}: "
          f"{verdict(facts.listed_bytes == scanned_listed == book.listed_bytes, 'agree', 'DIFFER')}")
    print(f"  the playbook's total overstates stored bytes {book.listed_bytes / max(scanned_stored, 1):.1f}x")


def memory(args, endpoint: str, env: dict[str, str], workdir: Path) -> None:
    print(f"peak RSS of `ecr-cost-bot scan` (empty store) per estate; moto {moto_version()} server at {endpoint}\n")
    print(f"{'estate':<26}{'images':>9}{'load s':>8}{'scan s':>8}{'API requests':>14}{'peak RSS MB':>13}")
    peaks: dict[tuple[int, int], float] = {}
    for repos, images in (BASELINE, DEEPER, WIDER):
        estate = build_estate(repos, images)
        load_seconds = load(estate, endpoint, "direct")
        del estate
        scan = ecr_cost_bot_scan(env, str(workdir / f"memory-{repos}x{images}.db"), repos)
        peaks[repos, images] = scan.run.peak_rss_mb
        print(f"{f'{repos:,} repos x {images} images':<26}{repos * images:>9,}{load_seconds:>8.1f}"
              f"{scan.run.seconds:>8.1f}{scan.api_requests:>14,}{scan.run.peak_rss_mb:>13.0f}", flush=True)

    (repos, images), base = BASELINE, peaks[BASELINE]
    deeper_images = DEEPER[0] * DEEPER[1] - repos * images
    print(f"\nper image:      {(peaks[DEEPER] - base) * 1024 / deeper_images:+.2f} KB "
          f"({repos} repositories, {images} -> {DEEPER[1]} images each: +{deeper_images:,} images)")
    print(f"per repository: {(peaks[WIDER] - base) * 1024 / (WIDER[0] - repos):+.1f} KB "
          f"({images} images each, {repos} -> {WIDER[0]:,} repositories; each brings its {images} images)")
    print(f"{DEEPER[0] * DEEPER[1]:,} images as {DEEPER[0]} x {DEEPER[1]}: {peaks[DEEPER]:.0f} MB; "
          f"{WIDER[0] * WIDER[1]:,} images as {WIDER[0]:,} x {WIDER[1]}: {peaks[WIDER]:.0f} MB")


def moto_version() -> str:
    import moto

    return moto.__version__


def verdict(ok: bool, yes: str = "met", no: str = "MISSED") -> str:
    return yes if ok else no


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=300)
    parser.add_argument("--images", type=int, default=30, help="stored images per repository")
    parser.add_argument("--populate", choices=["api", "direct"], default="api",
                        help="push the estate through the ECR API (default) or write it into moto's backend")
    parser.add_argument("--memory", action="store_true",
                        help=f"peak RSS of the scan on {', '.join(f'{r}x{i}' for r, i in (BASELINE, DEEPER, WIDER))} "
                             "estates instead")
    args = parser.parse_args()

    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="ecr-scan-bench-") as workdir:
        env = aws_environment(endpoint)
        os.environ.clear()  # this process's own boto3 (the push) sees what the contenders see
        os.environ.update(env)
        (memory if args.memory else speed)(args, endpoint, env, Path(workdir))


if __name__ == "__main__":
    main()
