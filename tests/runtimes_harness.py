"""Runtimes in moto for the in-use tests: ECS services and tasks, Lambda image functions, tags that move.

moto's gaps (ECR_FACTS.md §6) are patched here, in the harness, never in the product:
- a tag pushed onto another image deletes the old image in moto; AWS moves the tag and leaves the old image
  untagged (``move_tag``);
- ``describe_tasks`` has no ``imageDigest``: a running task's resolved digest is set on moto's task object;
- task status is pinned to RUNNING.
"""
from __future__ import annotations

import json

import boto3

from bot.sample import moto_move_tag, moto_task_runs
from tests.helpers.aws import ACCOUNT

REGION = "us-east-1"


def uri(repository: str, tag: str | None = None, digest: str | None = None, account: str = ACCOUNT,
        region: str = REGION) -> str:
    base = f"{account}.dkr.ecr.{region}.amazonaws.com/{repository}"
    return f"{base}@{digest}" if digest else f"{base}:{tag}"


def move_tag(repository: str, tag: str, digest: str, region: str = REGION, account: str = ACCOUNT) -> None:
    """As AWS does when CI pushes ``tag`` again: the tag moves to ``digest``, the old image stays, untagged."""
    moto_move_tag(account, region, repository, tag, digest)


def pin_tasks_running() -> None:
    from moto.moto_api import state_manager

    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})


def ecs_service(cluster: str, service: str, image: str, region: str = REGION) -> str:
    """A service whose deployment uses ``image`` (as written: a tag or a digest); returns the task definition ARN."""
    ecs = boto3.client("ecs", region_name=region)
    ecs.create_cluster(clusterName=cluster)
    arn = ecs.register_task_definition(family=f"{cluster}-{service}", containerDefinitions=[
        {"name": service, "image": image, "memory": 256}])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=arn, desiredCount=1)
    return arn


def run_task(cluster: str, task_definition: str, running_digest: str | None, region: str = REGION,
             account: str = ACCOUNT, ecs=None) -> str:
    """A running task of ``task_definition`` whose container really runs ``running_digest`` (what AWS reports
    in ``containers[].imageDigest``; moto reports none)."""
    ecs = ecs or boto3.client("ecs", region_name=region)
    if not ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
        ec2 = boto3.client("ec2", region_name=region)
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(
            {"instanceId": instance, "region": region}))
    task = ecs.run_task(cluster=cluster, taskDefinition=task_definition, count=1)["tasks"][0]
    if running_digest:
        moto_task_runs(account, region, cluster, task["taskArn"], running_digest)
    return task["taskArn"]


def stop_everything(cluster: str, region: str = REGION) -> None:
    ecs = boto3.client("ecs", region_name=region)
    for arn in ecs.list_tasks(cluster=cluster)["taskArns"]:
        ecs.stop_task(cluster=cluster, task=arn)
    for arn in ecs.list_services(cluster=cluster)["serviceArns"]:
        ecs.delete_service(cluster=cluster, service=arn, force=True)


def lambda_function(name: str, image: str, region: str = REGION) -> None:
    iam = boto3.client("iam", region_name=region)
    try:
        role = iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="lambda-role")["Role"]["Arn"]
    client = boto3.client("lambda", region_name=region)
    client.create_function(FunctionName=name, Role=role, PackageType="Image", Code={"ImageUri": image})
    client.publish_version(FunctionName=name)
