"""Start-up: `ecr-cost-bot --help` against a bare Python start, in the same run.

    .venv/bin/python bench/startup_bench.py [--repeat 15]

Each is its own process, run ``--repeat`` times alternately; the best wall time of each is kept (the least disturbed
by the rest of the machine) and its peak RSS read with os.wait4. Why a bare start is the baseline: no Python program
starts faster than `python -c pass` from the same interpreter and environment; everything above it is the program's
imports. The bot imports boto3, Slack, DuckDB, matplotlib and sqlite-utils only in the commands that use them.
Run it from the bot's own environment (no pandas installed: sqlite-utils imports pandas whenever it is).

Target: `--help` within 10x a bare start. Also printed, for reference: a command that needs neither the store nor AWS
(`policy validate` on the bundled base policy) and the imports every command that reads the store or AWS pays
(`python -c "import bot.wiring"`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def once(argv: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "ecr-cost-bot"
    contenders = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ecr-cost-bot --help": [str(script), "--help"],
        "policy validate": [str(script), "policy", "validate", str(ROOT / "bot" / "policies" / "base.json")],
        "import bot.wiring": [sys.executable, "-c", "import bot.wiring"],
    }
    best = {name: (float("inf"), 0.0) for name in contenders}
    for _ in range(args.repeat):
        for name, argv in contenders.items():
            seconds, rss = once(argv)
            best[name] = (min(best[name][0], seconds), max(best[name][1], rss))
    bare = best["python -c pass"][0]
    print(f"{'process':<22}  {'best wall s':>11}  {'x bare':>7}  {'peak RSS MB':>11}")
    for name, (seconds, rss) in best.items():
        print(f"{name:<22}  {seconds:11.3f}  {seconds / bare:7.1f}  {rss:11.0f}")
    ratio = best["ecr-cost-bot --help"][0] / bare
    print(f"--help / bare start: {ratio:.1f}x (target <= 10x)")
    return 0 if ratio <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
