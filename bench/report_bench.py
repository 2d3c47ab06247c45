"""How long the weekly report takes to build and render, against the scan of the same estate.

    python bench/report_bench.py [--sizes 1000 10000] [--images 5]

For each size: an estate of N repositories is written into moto's backend (see scan_bench.py),
`ecr-cost-bot scan` runs against it as its own process (the baseline, measured in this run), and
then, in this process on the scan's store, the report is built (previous period, decisions, base
policy preview of every repository without a policy), rendered to Block Kit and text, and charted.
Prints seconds and the ratio report / scan: the report must be a small fraction of the scan.
Then `ecr-cost-bot report --format json` runs as its own process on that store, right after the scan
(what a user runs): it builds on the scan (younger than ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES) instead of
scanning again; its wall time (imports included) is printed as "CLI s", against the scan's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scan_bench import aws_environment, build_estate, ecr_cost_bot_scan, load, moto_server, run  # noqa: E402


def build_and_render(db_path: str, env: dict) -> tuple[float, float, float, int]:
    """(build s, render s, chart s, Block Kit blocks) on the store the scan left."""
    from bot.config import load_settings
    from bot.jobs import period_start
    from bot.render.chart import chart_png
    from bot.render.report import report_message, report_text
    from bot.wiring import build

    settings = load_settings({**env, "ECR_COST_DB": db_path})
    components = build(settings, session_factory=lambda role: None)  # no AWS: the report reads the store
    store = components.store
    try:
        scan = store.latest_scan()
        started = time.perf_counter()
        report = components.application.weekly_report(scan, period_start(settings, datetime.now(UTC)))
        built = time.perf_counter()
        message = report_message(report)
        report_text(report)
        rendered = time.perf_counter()
        chart_png(report)
        charted = time.perf_counter()
    finally:
        store.close()
    return built - started, rendered - built, charted - rendered, len(message["blocks"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    print(f"{'repositories':>12}  {'scan s':>7}  {'build s':>7}  {'render s':>8}  {'chart s':>7}  "
          f"{'report s':>8}  {'report/scan':>11}  {'blocks':>6}  {'CLI s':>6}")
    with moto_server() as endpoint:
        env = aws_environment(endpoint)
        for size in args.sizes:
            estate = build_estate(size, args.images)
            load(estate, endpoint, "direct")
            with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
                db_path = f"{tmp}/bench.db"
                scan = ecr_cost_bot_scan(env, db_path, size)
                build, render, chart, block_count = build_and_render(db_path, env)
                cli = run([sys.executable, "-m", "bot", "report", "--format", "json"], {**env, "ECR_COST_DB": db_path})
                if cli.returncode != 0 or "using the scan of" not in cli.stderr:
                    sys.exit(f"report did not build on the scan:\n{cli.stderr[-2000:]}")
            total = build + render + chart
            print(f"{size:>12,}  {scan.own_seconds:>7.2f}  {build:>7.2f}  {render:>8.3f}  {chart:>7.2f}  "
                  f"{total:>8.2f}  {total / scan.own_seconds:>10.1%}  {block_count:>6}  {cli.seconds:>6.2f}")


if __name__ == "__main__":
    main()
