"""The API floor: the fewest ECR calls a correct first scan can make, with nothing else around them.

Plain boto3, 16 threads, no store, no pricing model: list the repositories, then per repository
describe its images, read its lifecycle policy and tags, fetch its manifests 100 at a time and sum
its unique blobs (config + layers, each digest once). Index manifests need no second round here:
ECR lists an index's children as images of their own, so the first batch_get_image covers them.

Prints one JSON object on stdout. The endpoint, region and credentials come from the environment
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, ...), as for the bot.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

PAGE_SIZE = 1000  # the largest page ECR serves
MANIFESTS_PER_CALL = 100  # BatchGetImage's limit
WORKERS = 16
ACCEPTED_MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]


class RequestCounter:
    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, **_):
        with self._lock:
            self.count += 1


def read_repository(client, repository: dict) -> tuple[int, int]:
    """(unique blob bytes, manifests read) of one repository."""
    name = repository["repositoryName"]
    pages = client.get_paginator("describe_images").paginate(
        repositoryName=name, filter={"imageStatus": "ANY"}, PaginationConfig={"PageSize": PAGE_SIZE})
    digests = [detail["imageDigest"] for page in pages for detail in page["imageDetails"]]
    with contextlib.suppress(client.exceptions.LifecyclePolicyNotFoundException):
        client.get_lifecycle_policy(repositoryName=name)
    client.list_tags_for_resource(resourceArn=repository["repositoryArn"])

    blobs: dict[str, int] = {}
    manifests = 0
    for start in range(0, len(digests), MANIFESTS_PER_CALL):
        response = client.batch_get_image(
            repositoryName=name, acceptedMediaTypes=ACCEPTED_MEDIA_TYPES,
            imageIds=[{"imageDigest": d} for d in digests[start:start + MANIFESTS_PER_CALL]])
        for image in response["images"]:
            manifests += 1
            doc = json.loads(image["imageManifest"])
            for descriptor in (doc.get("config"), *doc.get("layers", ())):
                if descriptor:
                    blobs[descriptor["digest"]] = descriptor["size"]
    return sum(blobs.values()), manifests


def main() -> None:
    started = time.perf_counter()
    counter = RequestCounter()
    client = boto3.client("ecr", config=Config(max_pool_connections=WORKERS + 4))
    client.meta.events.register("before-send", counter)
    pages = client.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": PAGE_SIZE})
    repositories = [repository for page in pages for repository in page["repositories"]]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda repository: read_repository(client, repository), repositories))
    print(json.dumps({
        "repository_count": len(repositories),
        "stored_bytes": sum(stored for stored, _ in results),
        "manifests_fetched": sum(manifests for _, manifests in results),
        "api_requests": counter.count,
        "seconds": round(time.perf_counter() - started, 3),
    }))


if __name__ == "__main__":
    main()
