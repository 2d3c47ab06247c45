"""The simulations' shared AWS clients (one per service for a whole run) and their small moves."""
from __future__ import annotations

import boto3

from tests.helpers.aws import ecr
from tests.runtimes_harness import REGION

_clients: dict[str, object] = {}


def client(service: str = "ecr"):
    """One client per service for the whole run (making a boto3 client costs more than a call to moto)."""
    if service not in _clients:
        _clients[service] = ecr() if service == "ecr" else boto3.client(service, region_name=REGION)
    return _clients[service]


def describe() -> list[dict]:
    return [d for page in client().get_paginator("describe_images").paginate(repositoryName="svc")
            for d in page["imageDetails"]]


def stop_everything_of(sim, service: str) -> None:
    """Stops the running tasks of ``service`` (a deployment replaces them)."""
    ecs = client("ecs")
    arns = ecs.list_tasks(cluster="prod", desiredStatus="RUNNING")["taskArns"]
    for task in ecs.describe_tasks(cluster="prod", tasks=arns).get("tasks", []) if arns else []:
        if task["taskDefinitionArn"].split("/")[-1].startswith(f"prod-{service}:"):
            ecs.stop_task(cluster="prod", task=task["taskArn"])
