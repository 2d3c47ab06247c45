"""In-use collection benchmark: where images run (ECS, Lambda), against the API floor and a scan of the same
estate, on moto's server over HTTP, in one run.

    .venv/bin/python bench/in_use_bench.py [--services 200 --tasks 1000 --definitions 300 --functions 200]

The estate: ``--repositories`` ECR repositories (the app's, with 50 images, and others of 20); one cluster per
20 services; `--definitions` task definitions shared by the services; `--tasks`
running tasks spread over the services' definitions; `--functions` Lambda image functions, each with one
published version and one alias; one repository holding the images they run.

The floor is the fewest calls a correct collection can make, which is what a good engineer writing the collection by
hand would make: per region list_clusters, per cluster list_services and list_tasks (pages of 100), describe_services
by 10, describe_tasks by 100, describe_service_revisions by 20 across every service of the region (the services'
currentServiceRevisions; moto returns none, so these count 0 here), one describe_task_definition per distinct
definition (none on the second run: definitions are immutable and cached), list_functions (the pages the server
serves), and per image function list_versions_by_function, list_aliases and one get_function per version ($LATEST and
the published one). An alias runs a version already read: no get_function of its own (an earlier floor counted one,
which flattered the collector), plus the one STS GetCallerIdentity per account every collection makes.
Target: calls <= 1.1x the floor, cold and warm.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--definitions", type=int, default=300)
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--repositories", type=int, default=100, help="ECR repositories of 20 images each")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    workdir = tempfile.mkdtemp(prefix="in-use-bench-")
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "MOTO_LAMBDA_STUB_ECR": "false", "ECR_COST_DB": os.path.join(workdir, "bench.db"),
                       "ECR_COST_REGIONS": "us-east-1"})
    try:
        floor, used_definitions = build_estate(args)
        from bot.config import load_settings
        from bot.wiring import build

        built = build(load_settings())
        started = time.perf_counter()
        built.application.scan()
        scan_seconds = time.perf_counter() - started

        calls_before = built.collector.api_calls
        started = time.perf_counter()
        references, problems = built.runtimes.collect()
        first_seconds = time.perf_counter() - started
        first_calls = built.collector.api_calls - calls_before
        first_definitions = built.runtimes.task_definitions_read
        assert not problems, problems

        calls_before = built.collector.api_calls
        started = time.perf_counter()
        built.runtimes.collect()
        second_seconds = time.perf_counter() - started
        second_calls = built.collector.api_calls - calls_before
        second_definitions = built.runtimes.task_definitions_read - first_definitions
        built.close()
    finally:
        server.stop()

    warm_floor = floor - used_definitions
    print(f"estate: {args.repositories} repositories, {args.services} services, {args.tasks} running tasks, "
          f"{args.definitions} task definitions, {args.functions} Lambda functions (moto server, HTTP)")
    print(f"{'':32} {'wall s':>7} {'API calls':>9} {'floor':>6} {'calls/floor':>11}")
    print(f"{'scan of the same estate':32} {scan_seconds:7.2f}")
    print(f"{'in-use, first (cold cache)':32} {first_seconds:7.2f} {first_calls:9d} {floor:6d} "
          f"{first_calls / floor:11.2f}")
    print(f"{'in-use, second (warm cache)':32} {second_seconds:7.2f} {second_calls:9d} {warm_floor:6d} "
          f"{second_calls / warm_floor:11.2f}")
    print(f"\nreferences found: {len(references)}; task definitions read: first {first_definitions}, "
          f"second {second_definitions}")
    print(f"in-use collection / scan wall time: {first_seconds / scan_seconds:.2f}x (first), "
          f"{second_seconds / scan_seconds:.2f}x (second); target calls <= 1.1x the floor, cold and warm")


def build_estate(args) -> tuple[int, int]:
    """Creates the estate; returns the floor of API calls for one collection (cold cache) and how many task
    definitions are in use."""
    import boto3

    from bot.sample import SampleRepository, blob, image, push

    ecr = boto3.client("ecr")
    images = [image([blob(f"base-{n % 5}", 10_000_000)], blob(f"cfg-{n}", 100), (f"v{n}",)) for n in range(50)]
    push(ecr, SampleRepository("us-east-1", "app", images))
    for r in range(args.repositories - 1):  # the rest of the registry: what the scan reads besides
        push(ecr, SampleRepository("us-east-1", f"svc-{r}", [
            image([blob(f"base-{n % 5}", 10_000_000), blob(f"svc-{r}-{n}", 1_000_000)], blob(f"svc-{r}-cfg-{n}", 100),
                  (f"v{n}",)) for n in range(20)]))
    account = boto3.client("sts").get_caller_identity()["Account"]
    uri = f"{account}.dkr.ecr.us-east-1.amazonaws.com/app"

    ecs = boto3.client("ecs")
    ec2 = boto3.client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    clusters = [f"c{n}" for n in range(math.ceil(args.services / 20))]
    definitions = []
    for n in range(args.definitions):
        definitions.append(ecs.register_task_definition(family=f"td{n}", containerDefinitions=[
            {"name": "app", "image": f"{uri}:v{n % 50}", "memory": 128}])["taskDefinition"]["taskDefinitionArn"])
    used_definitions = set()
    services_by_cluster: dict[str, list[str]] = {c: [] for c in clusters}
    for n in range(args.services):
        cluster = clusters[n % len(clusters)]
        ecs.create_cluster(clusterName=cluster)
        ecs.create_service(cluster=cluster, serviceName=f"s{n}", taskDefinition=definitions[n % len(definitions)],
                           desiredCount=1)
        used_definitions.add(definitions[n % len(definitions)])
        services_by_cluster[cluster].append(f"s{n}")
    tasks_by_cluster = {c: 0 for c in clusters}
    for cluster in clusters:
        instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(
            {"instanceId": instance, "region": "us-east-1"}))
    from moto.moto_api import state_manager

    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    remaining, n = args.tasks, 0
    while remaining:
        cluster = clusters[n % len(clusters)]
        count = min(10, remaining)
        ecs.run_task(cluster=cluster, taskDefinition=definitions[n % len(definitions)], count=count)
        used_definitions.add(definitions[n % len(definitions)])
        tasks_by_cluster[cluster] += count
        remaining -= count
        n += 1
    lam = boto3.client("lambda")
    role = boto3.client("iam").create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    for n in range(args.functions):
        lam.create_function(FunctionName=f"f{n}", Role=role, PackageType="Image", Code={"ImageUri": f"{uri}:v{n % 50}"})
        version = lam.publish_version(FunctionName=f"f{n}")["Version"]
        lam.create_alias(FunctionName=f"f{n}", Name="live", FunctionVersion=version)

    floor = 1 + 1  # sts get_caller_identity, list_clusters
    revisions = 0
    for cluster in clusters:
        services, tasks = len(services_by_cluster[cluster]), tasks_by_cluster[cluster]
        floor += max(1, math.ceil(services / 100)) + math.ceil(services / 10)
        floor += max(1, math.ceil(tasks / 100)) + math.ceil(tasks / 100)
        for page in ecs.get_paginator("list_services").paginate(cluster=cluster):
            for chunk in range(0, len(page["serviceArns"]), 10):
                described = ecs.describe_services(cluster=cluster, services=page["serviceArns"][chunk:chunk + 10])
                revisions += sum(len(s.get("currentServiceRevisions", [])) for s in described["services"])
    floor += math.ceil(revisions / 20)  # describe_service_revisions, 20 ARNs a call, across services
    floor += len(used_definitions)  # the definitions nothing runs are never read
    floor += sum(1 for _ in lam.get_paginator("list_functions").paginate())  # the pages the server serves
    floor += args.functions * (2 + 2)  # list_versions, list_aliases; get_function for $LATEST and version 1
    return floor, len(used_definitions)


if __name__ == "__main__":
    main()
