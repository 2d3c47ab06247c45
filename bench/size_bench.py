"""`size` on a repository of 10,000 images and 200,000 layer references, from the store, against a single pass that
just reads the same rows from SQLite, in the same run.

    .venv/bin/python bench/size_bench.py [--images 10000] [--layers 20] [--others 5] [--repeat 3]

The store is written directly (no AWS): one big repository (every image: 4 shared base layers, 10 toolchain layers
that change every 200 builds, 3 dependency layers that change every 10, and 3 layers new on each push: 20 layer
references and a config blob), and ``--others`` repositories of 200 images on the same base, so that the shared
layers and the base are looked up across the estate as in a real scan. Both contenders read the scan's image list
of every repository and the manifests they reach:

- baseline: plain sqlite3, the rows fetched and their JSON columns decoded (the image lists, to know which manifests
  to fetch, and each manifest's blob list): the least any reader of these rows does. The rows fetched as text,
  undecoded, are timed too and printed beside it;
- store read: the same rows read through the store (`snapshot_images`, `get_manifests`) into the models `size`
  starts from, printed for comparison;
- size: `Application.size(scan, row, read_steps=False)` (the store only: no config blob is fetched), i.e. the rows
  read into models, every figure computed.

Prints the best wall time of ``--repeat`` runs of each, the ratio size / baseline (target: under 2x) and each one's
peak Python memory (tracemalloc, a separate run).

Then peak RSS, each contender in a process of its own (ru_maxrss from os.wait4; this process forks them before it
writes anything large, so their high-water marks are their own):

- plain read: plain sqlite3 and json, no bot import: every repository's image list and manifests read as above, the
  subject's (``big``) rows kept decoded, the others' dropped after reading. Why this is the fair baseline: `size`
  needs all of the subject's images and manifests at once (its pushes, churn and shared layers span the whole
  history), and the others only one at a time; a good engineer's hand-written script would hold exactly that.
- size: `ecr-cost-bot size big --format json` as a user runs it (imports, wiring and the store included), from this
  interpreter (no pandas: sqlite-utils imports it whenever installed).

Target: size's peak RSS at most 2x the plain read's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 2**20


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def write_estate(db_path: str, images: int, layers: int, others: int, now: datetime) -> None:
    from bot.core.cost import price_repository
    from bot.core.models import Image, Manifest, RepositoryInventory, RepositoryRef, ScanResult
    from bot.store import Store

    store = Store(db_path)
    scan_id = store.begin_scan(now, 0.10)
    base = [(digest(f"base-{n}"), (20 + n) * MB) for n in range(4)]
    rows = []

    def repository(name: str, count: int, per_push: int) -> None:
        manifests, listed = [], []
        for build in range(count):
            own = [(digest(f"{name}-tool-{build // 200}-{n}"), 2 * MB + n) for n in range(10)]
            own += [(digest(f"{name}-deps-{build // 10}-{n}"), 10 * MB + n) for n in range(3)]
            own += [(digest(f"{name}-push-{build}-{n}"), 1 * MB + 5 * MB * n + build) for n in range(per_push)]
            blobs = tuple([(digest(f"{name}-config-{build}"), 6_000 + build), *(base + own)[:layers]])
            image_digest = digest(f"{name}-manifest-{build}")
            manifests.append(Manifest(image_digest, "application/vnd.docker.distribution.manifest.v2+json", blobs))
            listed.append(Image(image_digest, (f"build-{build}",) if build % 7 else (), sum(s for _, s in blobs),
                                now - timedelta(hours=2 * (count - build)),
                                media_type="application/vnd.docker.distribution.manifest.v2+json"))
        ref = RepositoryRef("123456789012", "us-east-1", name, f"arn:aws:ecr:us-east-1:123456789012:repository/{name}")
        inventory = RepositoryInventory(ref, now - timedelta(days=400), {"owner": "U0BENCH01"}, None, listed,
                                        {m.digest: m for m in manifests})
        row, _ = price_repository(inventory, price_per_gb_month=0.10, unused_days=90, owner_tag="owner", now=now)
        store.put_manifests(manifests)
        store.save_repository(scan_id, row, listed)
        rows.append(row)

    repository("big", images, 3)
    for n in range(others):
        repository(f"other-{n}", 200, 1)
    store.finish_scan(ScanResult(now, 0.10, rows, [], [], scan_id=scan_id))
    store.close()


def baseline(db_path: str, decode: bool = True) -> int:
    """The rows `size` reads, fetched with plain sqlite3: every repository's image list of the latest scan, and the
    manifests those images name, their JSON columns decoded (``decode``; else fetched as text). Returns the number of
    manifest rows."""
    connection = sqlite3.connect(db_path)
    try:
        scan_id = connection.execute("select id from scans where status = 'complete' order by id desc limit 1"
                                     ).fetchone()[0]
        count = 0
        for (images,) in connection.execute("select images from snapshot_images where scan_id = ?", [scan_id]):
            digests = [i["digest"] for i in json.loads(images)]
            for start in range(0, len(digests), 500):
                chunk = digests[start:start + 500]
                rows = connection.execute(f"select * from manifests where digest in ({','.join('?' * len(chunk))})",
                                          chunk).fetchall()
                if decode:
                    rows = [(json.loads(blobs), json.loads(children)) for _, _, blobs, children, *_ in rows]
                count += len(rows)
        return count
    finally:
        connection.close()


class Sized:
    """The application on the bench's store, built once (wiring is not what is measured)."""

    def __init__(self, db_path: str):
        from bot.config import load_settings
        from bot.wiring import build

        self.components = build(load_settings({"ECR_COST_DB": db_path}), session_factory=lambda role: None)
        self.scan = self.components.store.latest_scan()
        self.row = next(r for r in self.scan.repositories if r.repository == "big")

    def __call__(self):
        return self.components.application.size(self.scan, self.row, read_steps=False)

    def close(self):
        self.components.close()


def store_read(sized: Sized) -> int:
    """The same rows read through the store into the models every reader of the store gets (what `size` starts
    from): each repository's images, and the manifests they reach."""
    from bot.core.cost import reachable_manifests

    store, count = sized.components.store, 0
    for row in sized.scan.repositories:
        images = store.snapshot_images(sized.scan.scan_id, row.arn) or []
        count += len(reachable_manifests((i.digest for i in images), store.get_manifests))
    return count


def timed(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def peak(function) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def plain_read(db_path: str, subject: str = "big") -> int:
    """The fair baseline for memory (see the docstring): the subject's rows held decoded, the others streamed."""
    connection = sqlite3.connect(db_path)
    held = None
    try:
        scan_id = connection.execute("select id from scans where status = 'complete' order by id desc limit 1"
                                     ).fetchone()[0]
        for arn, images in connection.execute("select arn, images from snapshot_images where scan_id = ?", [scan_id]):
            listed = json.loads(images)
            digests = [i["digest"] for i in listed]
            manifests = {}
            for start in range(0, len(digests), 500):
                chunk = digests[start:start + 500]
                for digest, blobs, children in connection.execute(
                        f"select digest, blobs, children from manifests where digest in ({','.join('?' * len(chunk))})",
                        chunk):
                    manifests[digest] = (json.loads(blobs), json.loads(children))
            if arn.endswith(f"/{subject}"):
                held = (listed, manifests)
        return len(held[1])
    finally:
        connection.close()


def rss_child(argv: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one process."""
    import subprocess

    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out.decode()


def rss_contest(db_path: str) -> None:
    plain_s, plain_mb, _ = rss_child([sys.executable, __file__, "--plain-read", db_path])
    size_s, size_mb, out = rss_child([sys.executable, "-m", "bot", "size", "big", "--format", "json"],
                                     {"ECR_COST_DB": db_path, "AWS_ACCESS_KEY_ID": "none", "AWS_SECRET_ACCESS_KEY":
                                      "none", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert json.loads(out)["repository"] == "big"
    print(f"{'process':<12}  {'wall s':>7}  {'peak RSS MB':>11}")
    print(f"{'plain read':<12}  {plain_s:>7.2f}  {plain_mb:>11.0f}")
    print(f"{'size':<12}  {size_s:>7.2f}  {size_mb:>11.0f}")
    print(f"size / plain read, peak RSS: {size_mb / plain_mb:.2f}x (target: at most 2x)")


def main() -> None:
    if sys.argv[1:2] == ["--plain-read"]:
        print(plain_read(sys.argv[2]))
        return
    if sys.argv[1:2] == ["--write"]:  # in a child: this process stays small until the RSS contest has run
        write_estate(sys.argv[2], *map(int, sys.argv[3:6]), datetime.now(UTC))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--others", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="size-bench-") as folder:
        db_path = os.path.join(folder, "bench.db")
        started = time.perf_counter()
        rss_child([sys.executable, __file__, "--write", db_path, str(args.images), str(args.layers), str(args.others)])
        print(f"store written in {time.perf_counter() - started:.1f} s: 'big' with {args.images:,} images and "
              f"{args.images * args.layers:,} layer references, {args.others} other repositories of 200 images")
        rss_contest(db_path)
        rows = baseline(db_path)
        size_once = Sized(db_path)
        report = size_once()  # warms the page cache for both, and checks the answer
        assert report.image_count == args.images, report.image_count
        assert report.churn.pushes == 20 and report.advice, report
        raw_s = timed(lambda: baseline(db_path, decode=False), args.repeat)
        base_s = timed(lambda: baseline(db_path), args.repeat)
        models_s = timed(lambda: store_read(size_once), args.repeat)
        size_s = timed(size_once, args.repeat)
        base_peak = peak(lambda: baseline(db_path))
        size_peak = peak(size_once)
        size_once.close()
    print(f"{'contender':<10}  {'wall s':>7}  {'peak MB':>8}")
    print(f"{'baseline':<10}  {base_s:>7.3f}  {base_peak / MB:>8.1f}   ({rows:,} manifest rows, JSON decoded)")
    print(f"{'size':<10}  {size_s:>7.3f}  {size_peak / MB:>8.1f}")
    print(f"{'store read':<10}  {models_s:>7.3f}            (the same rows through the store, into models)")
    print(f"size / baseline: {size_s / base_s:.2f}x (target: under 2x); size / store read: {size_s / models_s:.2f}x; "
          f"size / rows fetched but not decoded ({raw_s:.3f} s): {size_s / raw_s:.1f}x")
    print(f"advice: {report.advice[0].text}")


if __name__ == "__main__":
    main()
