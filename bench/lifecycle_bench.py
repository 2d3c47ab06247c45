"""How lifecycle evaluation scales: the base policy on repositories of 1,000 to 100,000 images.

    python bench/lifecycle_bench.py [--sizes 1000 10000 100000] [--repeat 3]

For each size it times, in the same run:
- the baseline: sorting the images newest first once (the n log n floor any count rule pays);
- evaluate(): the base policy's four rules, decisions only;
- preview(): evaluate plus bytes freed over the repository's manifests (what a user waits for).
It prints seconds, the ratio to the baseline, and the growth per 10x more images (10x = linear).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import shipped_base_policy_text  # noqa: E402
from bot.core.lifecycle import evaluate, preview  # noqa: E402
from bot.core.models import Image, Manifest  # noqa: E402

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def repository(n: int, seed: int = 1) -> tuple[list[Image], dict[str, Manifest]]:
    """n images: releases, latest, branch builds and untagged leftovers, sharing base and deps layers."""
    rng = random.Random(seed)
    images, manifests = [], {}
    base = [(f"sha256:base{k}", 30_000_000) for k in range(3)]
    for i in range(n):
        kind = rng.random()
        tags = (() if kind < 0.2 else (f"v{i // 100}.{i % 100}.0",) if kind < 0.5
                else ("latest",) if kind < 0.52 else (f"main-{i:07x}",))
        digest = f"sha256:{i:064x}"
        images.append(Image(digest, tags, 0, NOW - timedelta(minutes=n - i + rng.random()),
                            NOW - timedelta(days=rng.random() * 30) if rng.random() < 0.5 else None))
        blobs = (*base, (f"sha256:deps{i // 10}", 20_000_000), (f"sha256:app{i}", rng.randint(1, 50) * 1_000_000))
        manifests[digest] = Manifest(digest, "application/vnd.oci.image.manifest.v1+json", blobs=blobs)
    return images, manifests


def best_of(repeat: int, work) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policy = json.loads(shipped_base_policy_text())

    print(f"{'images':>8}  {'sort (s)':>9}  {'evaluate (s)':>12}  {'x sort':>7}  {'preview (s)':>11}  "
          f"{'x sort':>7}  {'expiring':>8}  {'growth':>7}")
    previous = None
    for n in args.sizes:
        images, manifests = repository(n)
        baseline = best_of(args.repeat,
                           lambda images=images: sorted(images, key=lambda i: (-i.pushed_at.timestamp(), i.digest)))
        evaluated = best_of(args.repeat, lambda images=images: evaluate(images, policy, NOW))
        previewed = best_of(args.repeat,
                            lambda images=images, manifests=manifests: preview(images, policy, NOW, manifests))
        expiring = sum(1 for d in preview(images, policy, NOW, manifests).decisions if d.action == "expire")
        growth = f"{previewed / previous[1]:.1f}x" if previous else "-"
        print(f"{n:>8,}  {baseline:>9.4f}  {evaluated:>12.4f}  {evaluated / baseline:>6.1f}x  {previewed:>11.4f}  "
              f"{previewed / baseline:>6.1f}x  {expiring:>8,}  {growth:>7}")
        previous = (n, previewed)
    print("growth = preview time / the previous size's (sizes 10x apart: ~10x is linear, ~13x is n log n)")


if __name__ == "__main__":
    main()
