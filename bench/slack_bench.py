"""How fast `serve` acknowledges /ecr-cost, and how soon the answer arrives.

    python bench/slack_bench.py [--concurrency 20] [--rounds 5]

Starts moto's server (the sample estate loaded), a local Slack stand-in, one scan, then
`ecr-cost-bot serve` in HTTP mode as its own process. Fires rounds of N concurrent signed
`/ecr-cost NAME` requests and prints p50/p99 of the time to HTTP 200 (Slack's limit is 3 s;
target p99 < 300 ms) and of the time until the detail reached the response_url. The baseline,
measured in the same run, is the same number of concurrent GET /healthz requests on the same server.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-signing-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from bot.sample import load_estate, sample_estate
    from tests.slack_standin import SlackStandIn, signed_headers

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    workdir = tempfile.mkdtemp(prefix="slack-bench-")
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    standin = SlackStandIn()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "ECR_COST_REGIONS": "us-east-1,eu-west-1", "ECR_COST_DB": f"{workdir}/bench.db",
           "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": standin.api_url}
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    estate = sample_estate()
    load_estate(boto3.Session(region_name="us-east-1"), "123456789012", estate, datetime.now(UTC))
    subprocess.run([sys.executable, "-m", "bot", "scan"], env=env, cwd=ROOT, check=True, capture_output=True)

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env={**env, "PORT": str(port)}, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.1)

        names = [repo.name if sum(r.name == repo.name for r in estate) == 1 else f"{repo.region}/{repo.name}"
                 for repo in estate]

        def healthz(_: int) -> float:
            started = time.perf_counter()
            urllib.request.urlopen(f"{base}/healthz", timeout=10).read()
            return time.perf_counter() - started

        def slash(i: int) -> tuple[float, str, float]:
            response_url = standin.response_url()
            body = urlencode({"command": "/ecr-cost", "text": names[i % len(names)], "user_id": "U0BENCH01",
                              "team_id": "T0BENCH", "channel_id": "C0BENCH", "response_url": response_url,
                              "trigger_id": "t", "api_app_id": "A0BENCH"})
            request = urllib.request.Request(f"{base}/slack/events", data=body.encode(),
                                             headers=signed_headers(SECRET, body), method="POST")
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            return time.perf_counter() - started, response_url.rsplit("/", 1)[1], started

        acks, details, floors = [], [], []
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            for _ in range(args.rounds):
                floors += list(pool.map(healthz, range(args.concurrency)))
                standin.reset()
                sent = list(pool.map(slash, range(args.concurrency)))
                acks += [elapsed for elapsed, _, _ in sent]
                for _, response_id, started in sent:
                    standin.wait_for(lambda calls, responses, response_id=response_id: any(
                        i == response_id for i, _ in responses), 60)
                    details.append(standin.first_arrival[response_id] - started)
        ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
        print(f"{args.rounds} rounds x {args.concurrency} concurrent signed /ecr-cost NAME requests "
              f"({len(estate)} repositories in the sample estate)")
        print(f"  baseline GET /healthz   p50 {ms(statistics.median(floors))}  p99 {ms(percentile(floors, 0.99))}")
        print(f"  HTTP 200 (ack)          p50 {ms(statistics.median(acks))}  p99 {ms(percentile(acks, 0.99))}"
              f"  (p99 {percentile(acks, 0.99) / percentile(floors, 0.99):.1f}x the baseline; Slack allows 3,000 ms)")
        print(f"  detail at response_url p50 {ms(statistics.median(details))}  p99 {ms(percentile(details, 0.99))}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        standin.stop()
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
