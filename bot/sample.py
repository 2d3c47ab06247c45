"""A realistic sample registry: real-looking manifests with shared base layers, multi-arch indexes,
untagged leftovers, semver / latest / branch / sha tags, owners, policies, long-unused repositories.

Used by `ecr-cost-bot demo` (on moto in-process), and by the tests and benchmarks (on moto's server).
Only `correct_moto` knows about moto, and imports it when called. The sample is the AWS side of the demo: it
writes the registry through boto3 clients of its own (``sample_session``), so it is one of the modules that may
import boto3 (tests/test_architecture.py), and the demo itself need not.
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import shipped_base_policy_text

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MB = 2**20


def blob(name: str, size: int) -> tuple[str, int]:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest(), size


@dataclass(frozen=True)
class SampleImage:
    manifest: str
    media_type: str
    tags: tuple[str, ...]
    listed_bytes: int | None  # what AWS's imageSizeInBytes reports for it
    pushed_days_ago: float
    pulled_days_ago: float | None = None
    children: tuple[SampleImage, ...] = ()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest.encode()).hexdigest()


def image(layers: list[tuple[str, int]], config: tuple[str, int], tags=(), pushed_days_ago=1.0,
          pulled_days_ago=None, media_type=DOCKER_MANIFEST) -> SampleImage:
    layer_type = ("application/vnd.docker.image.rootfs.diff.tar.gzip" if media_type == DOCKER_MANIFEST
                  else "application/vnd.oci.image.layer.v1.tar+gzip")
    config_type = ("application/vnd.docker.container.image.v1+json" if media_type == DOCKER_MANIFEST
                   else "application/vnd.oci.image.config.v1+json")
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, "digest": config[0], "size": config[1]},
           "layers": [{"mediaType": layer_type, "digest": d, "size": s} for d, s in layers]}
    return SampleImage(json.dumps(doc, indent=3), media_type, tuple(tags),
                       sum(s for _, s in layers) + config[1], pushed_days_ago, pulled_days_ago)


def index(children: list[SampleImage], tags=(), pushed_days_ago=1.0, pulled_days_ago=None,
          platforms=("amd64", "arm64")) -> SampleImage:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [{"mediaType": c.media_type, "digest": c.digest, "size": len(c.manifest),
                          "platform": {"architecture": arch, "os": "linux"}}
                         for c, arch in zip(children, platforms, strict=False)]}
    # AWS lists a manifest list with the largest child's size; the children appear again, untagged
    return SampleImage(json.dumps(doc, indent=3), OCI_INDEX, tuple(tags), max(c.listed_bytes or 0 for c in children),
                       pushed_days_ago, pulled_days_ago, tuple(children))


@dataclass
class SampleRepository:
    region: str
    name: str
    images: list[SampleImage]
    tags: dict[str, str] = field(default_factory=dict)
    policy: str | None = None

    def all_images(self) -> list[SampleImage]:
        """Children first, each once: the order they must be pushed in."""
        seen, ordered = set(), []
        for img in self.images:
            for item in (*img.children, img):
                if item.digest not in seen:
                    seen.add(item.digest)
                    ordered.append(item)
        return ordered


# -- pushing and fixing moto's gaps ----------------------------------------------------------

def push(client, repo: SampleRepository) -> None:
    """Creates the repository and pushes its images through the ECR API (any ECR endpoint)."""
    client.create_repository(repositoryName=repo.name,
                             tags=[{"Key": k, "Value": v} for k, v in repo.tags.items()])
    if repo.policy is not None:
        client.put_lifecycle_policy(repositoryName=repo.name, lifecyclePolicyText=repo.policy)
    for img in repo.all_images():
        first, *more = img.tags or (None,)
        kwargs = {"imageTag": first} if first else {}
        client.put_image(repositoryName=repo.name, imageManifest=img.manifest,
                         imageManifestMediaType=img.media_type, imageDigest=img.digest, **kwargs)
        for tag in more:
            client.put_image(repositoryName=repo.name, imageManifest=img.manifest,
                             imageManifestMediaType=img.media_type, imageDigest=img.digest, imageTag=tag)


def correct_moto(account_id: str, repos: list[SampleRepository], now: datetime) -> None:
    """Gives moto's images what AWS would report: push and pull times, and imageSizeInBytes
    (moto reports the config blob's size, and nothing for an index). See ECR_FACTS.md §5."""
    from moto.ecr.models import ecr_backends

    for repo in repos:
        stored = {i.image_digest: i for i in ecr_backends[account_id][repo.region].repositories[repo.name].images}
        for img in repo.all_images():
            target = stored[img.digest]
            target.image_pushed_at = int((now - timedelta(days=img.pushed_days_ago)).timestamp())
            if img.pulled_days_ago is not None:
                # moto's Image keeps no pull time: the field AWS reports is added
                target.last_recorded_pull_time = now - timedelta(days=img.pulled_days_ago)  # type: ignore[attr-defined]
            # moto derives the size from the layers it holds: AWS's listed size instead
            target.get_image_size_in_bytes = (lambda size=img.listed_bytes: size)  # type: ignore[method-assign,misc]


# -- the demo estate -------------------------------------------------------------------------

BASES = {
    "python": [blob("python-3.12-slim/debian", 29 * MB), blob("python-3.12-slim/deps", 3 * MB + 400_000),
               blob("python-3.12-slim/python", 12 * MB + 800_000), blob("python-3.12-slim/pip", 3 * MB)],
    "node": [blob("node-20-alpine/alpine", 3 * MB + 500_000), blob("node-20-alpine/node", 40 * MB + 100_000),
             blob("node-20-alpine/yarn", 1 * MB + 300_000)],
    "jvm": [blob("temurin-21/ubuntu", 29 * MB + 700_000), blob("temurin-21/jre", 52 * MB),
            blob("temurin-21/certs", 9 * MB)],
    "go": [blob("distroless-static/base", 2 * MB), blob("distroless-static/tzdata", 500_000)],
    "cuda": [blob("cuda-12/ubuntu", 29 * MB + 700_000), blob("cuda-12/runtime", 1_200 * MB),
             blob("cuda-12/cudnn", 850 * MB)],
}

# (name, region, base, builds, app MB range, style, owner tag, policy, days since last push)
SERVICES = [
    ("ml/training-gpu", "us-east-1", "cuda", 45, (300, 900), "sha", "U02MLTEAM ml-team@example.com", None, 3),
    ("ml/inference", "us-east-1", "cuda", 60, (150, 400), "semver", "U02MLTEAM", "base", 1),
    ("data/spark-etl", "us-east-1", "jvm", 90, (200, 350), "branch", "data-eng@example.com", None, 2),
    ("payments-api", "us-east-1", "jvm", 120, (60, 120), "semver", "U01PAYMNT", None, 0.5),
    ("checkout-web", "us-east-1", "node", 110, (20, 60), "branch", "U01CHKOUT+U01FRONTD", None, 0.3),
    ("legacy/monolith", "us-east-1", "jvm", 70, (400, 700), "semver", "U03LEGACY", None, 240),
    ("platform/nginx-ingress", "us-east-1", "go", 40, (20, 40), "semver", "U04PLATFM", "custom", 12),
    ("search/indexer", "us-east-1", "jvm", 55, (90, 180), "sha", "search@example.com", None, 5),
    ("notifications", "us-east-1", "python", 65, (10, 30), "latest", "U05NOTIFY", None, 4),
    ("auth-service", "us-east-1", "go", 80, (15, 35), "semver", "U06AUTHTM", "base", 1),
    ("reporting/dashboards", "us-east-1", "node", 35, (30, 80), "branch", "team-bi", None, 20),
    ("experiments/prototype-2023", "us-east-1", "python", 25, (150, 300), "sha", "", None, 400),
    ("tools/ci-runner", "us-east-1", "python", 95, (80, 200), "latest", "U07DEVEXP", None, 0.2),
    ("tools/terraform", "us-east-1", "go", 30, (40, 60), "semver", "U07DEVEXP", None, 33),
    ("inventory-api", "us-east-1", "python", 50, (15, 40), "semver", "U08INVTRY", None, 6),
    ("orders-worker", "us-east-1", "python", 75, (20, 45), "branch", "U08INVTRY", None, 2),
    ("media/transcoder", "us-east-1", "go", 28, (250, 500), "multiarch", "U09MEDIA1", None, 9),
    ("media/thumbnailer", "us-east-1", "go", 22, (30, 70), "multiarch", "U09MEDIA1", "base", 15),
    ("fraud-model", "us-east-1", "python", 40, (500, 1200), "semver", "U02MLTEAM", None, 130),
    ("docs-site", "us-east-1", "node", 60, (5, 15), "latest", "U01FRONTD", None, 1),
    ("sandbox/alice", "us-east-1", "python", 12, (50, 100), "sha", "alice@example", None, 200),
    ("mobile-bff", "eu-west-1", "node", 85, (25, 55), "branch", "U10MOBILE", None, 0.5),
    ("payments-api", "eu-west-1", "jvm", 100, (60, 120), "semver", "U01PAYMNT", None, 0.5),
    ("gdpr-exporter", "eu-west-1", "python", 18, (20, 40), "semver", "U11PRIVCY", "base", 45),
    ("eu/ledger", "eu-west-1", "jvm", 65, (120, 220), "semver", "U12LEDGER", None, 3),
    ("eu/ledger-migrations", "eu-west-1", "jvm", 15, (5, 10), "sha", "U12LEDGER", None, 100),
    ("eu/recommendations", "eu-west-1", "cuda", 30, (200, 600), "multiarch", "U02MLTEAM", None, 7),
    ("eu/search-api", "eu-west-1", "go", 70, (10, 25), "semver", "search@example.com", None, 2),
    ("eu/batch-jobs", "eu-west-1", "python", 90, (40, 90), "latest", "U13BATCH1", None, 1),
    ("eu/web", "eu-west-1", "node", 100, (15, 40), "branch", "U01FRONTD", None, 0.2),
    ("eu/cache-warmer", "eu-west-1", "go", 20, (5, 10), "latest", "U04PLATFM", "base", 60),
    ("eu/old-api-v1", "eu-west-1", "python", 35, (30, 60), "semver", "U03LEGACY", None, 320),
    ("eu/analytics", "eu-west-1", "jvm", 45, (200, 400), "sha", "data-eng@example.com", None, 11),
    ("eu/edge-proxy", "eu-west-1", "go", 50, (8, 16), "multiarch", "U04PLATFM", None, 3),
    ("eu/pdf-renderer", "eu-west-1", "node", 25, (120, 180), "semver", "U14DOCS01", "custom", 25),
    ("eu/feature-flags", "eu-west-1", "go", 16, (5, 12), "semver", "U06AUTHTM", None, 1),
    ("eu/notebook-images", "eu-west-1", "python", 30, (900, 1500), "sha", "U02MLTEAM", None, 95),
    ("eu/kafka-connect", "eu-west-1", "jvm", 24, (80, 150), "semver", "", None, 50),
    ("eu/empty-placeholder", "eu-west-1", "go", 0, (1, 1), "semver", "U04PLATFM", None, 500),
    ("eu/status-page", "eu-west-1", "node", 14, (5, 10), "latest", "U01FRONTD", None, 8),
]

# built with the commonest waste: the code is copied before the dependencies are installed, so the dependency layer is
# rebuilt (and stored again) on every push; `ecr-cost-bot size tools/ci-runner` shows it
DEPS_AFTER_CODE = {("us-east-1", "tools/ci-runner")}

CUSTOM_POLICY = json.dumps({"rules": [{
    "rulePriority": 1, "description": "expire untagged after 14 days",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
    "action": {"type": "expire"}}]}, indent=2)


def _tags_for(style: str, build: int, builds: int, rng: random.Random) -> tuple[str, ...]:
    sha = f"{rng.getrandbits(28):07x}"
    newest = build == builds - 1
    if build % 7 == 3:
        return ()  # an untagged leftover: a tag moved on to a newer push
    if style == "semver":
        tags = [f"v{1 + build // 30}.{(build // 6) % 5}.{build % 6}"]
    elif style == "branch":
        tags = [f"{rng.choice(['main', 'main', 'develop', 'feature-login', 'fix-cache'])}-{sha}"]
    elif style == "latest":
        tags = [f"build-{build}"]
    else:
        tags = [f"git-{sha}"]
    if newest:
        tags.append("latest")
    return tuple(tags)


def _repository(spec) -> SampleRepository:
    name, region, base, builds, (low, high), style, owner, policy, last_push_days = spec
    rng = random.Random(f"{region}/{name}")
    base_layers = BASES[base]
    images: list[SampleImage] = []
    deps = blob(f"{region}/{name}/deps-0", rng.randint(low, high) * MB // 2)
    # days between consecutive builds, newest last: ages grow steadily towards the oldest build
    gaps = [rng.uniform(0.5, 3.0) for _ in range(builds)]
    for build in range(builds):
        if build % 10 == 0:  # dependencies change every ten builds; the layer is shared until then
            deps = blob(f"{region}/{name}/deps-{build}", rng.randint(low, high) * MB // 2)
        age = last_push_days + sum(gaps[build + 1:])
        pulled = None if age > 120 or rng.random() < 0.3 else max(age * rng.uniform(0.0, 0.5), last_push_days)
        tags = _tags_for(style, build, builds, rng)
        if style == "multiarch":
            children = [image(base_layers + [deps, blob(f"{region}/{name}/app-{build}-{arch}",
                                                        rng.randint(low, high) * MB // 2)],
                              blob(f"{region}/{name}/config-{build}-{arch}", 7_000 + build),
                              media_type=OCI_MANIFEST, pushed_days_ago=age, pulled_days_ago=pulled)
                        for arch in ("amd64", "arm64")]
            images.append(index(children, tags, age, pulled))
        elif (region, name) in DEPS_AFTER_CODE:
            code = blob(f"{region}/{name}/code-{build}", rng.randint(1, 3) * MB)
            deps = blob(f"{region}/{name}/deps-rebuilt-{build}", rng.randint(low, high) * MB // 2)
            images.append(image(base_layers + [code, deps], blob(f"{region}/{name}/config-{build}", 6_000 + build),
                                tags, age, pulled))
        else:
            app = blob(f"{region}/{name}/app-{build}", rng.randint(low, high) * MB // 2)
            images.append(image(base_layers + [deps, app], blob(f"{region}/{name}/config-{build}", 6_000 + build),
                                tags, age, pulled))
    policy_text = {"base": shipped_base_policy_text(), "custom": CUSTOM_POLICY, None: None}[policy]
    repo_tags = {"owner": owner, "cost-center": f"cc-{rng.randint(100, 999)}"} if owner else {"cost-center": "unknown"}
    return SampleRepository(region, name, images, repo_tags, policy_text)


def sample_estate() -> list[SampleRepository]:
    """About 40 repositories in two regions; deterministic."""
    return [_repository(spec) for spec in SERVICES]


def sample_session(region: str):
    """A boto3 session in ``region`` on whatever AWS the environment names (the demo's moto)."""
    import boto3

    return boto3.Session(region_name=region)


def load_estate(session, account_id: str, repos: list[SampleRepository], now: datetime | None = None) -> None:
    """Pushes ``repos`` through the ECR API of ``session`` (moto), then corrects moto's gaps."""
    now = now or datetime.now(UTC)
    clients: dict[str, object] = {}
    for repo in repos:
        client = clients.setdefault(repo.region, session.client("ecr", region_name=repo.region))
        push(client, repo)
    correct_moto(account_id, repos, now)


# -- where the sample's images run (ECS, Lambda), with moto's gaps patched as in the tests -------------------

def deploy_sample_workloads(session, account_id: str, ecs_repo: str, ecs_region: str, old_digest: str,
                            new_digest: str, lambda_repo: str, lambda_region: str, lambda_tag: str) -> None:
    """An ECS service deployed by the tag `prod` while it pointed at ``old_digest``; CI then moved `prod` to
    ``new_digest`` (AWS leaves the old image untagged) while the service's task still runs the old digest. A
    Lambda function on ``lambda_tag``. moto moves no tags and reports no task digest: both are set on its
    backend, as ECR_FACTS.md §6 describes."""
    from moto.moto_api import state_manager

    registry = f"{account_id}.dkr.ecr.{ecs_region}.amazonaws.com/{ecs_repo}"
    moto_move_tag(account_id, ecs_region, ecs_repo, "prod", old_digest)
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    ecs = session.client("ecs", region_name=ecs_region)
    ec2 = session.client("ec2", region_name=ecs_region)
    ecs.create_cluster(clusterName="prod")
    definition = ecs.register_task_definition(family=ecs_repo.replace("/", "-"), containerDefinitions=[
        {"name": "app", "image": f"{registry}:prod", "memory": 512}])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="prod", serviceName=ecs_repo.replace("/", "-"), taskDefinition=definition,
                       desiredCount=1)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ecs.register_container_instance(cluster="prod", instanceIdentityDocument=json.dumps(
        {"instanceId": instance, "region": ecs_region}))
    task = ecs.run_task(cluster="prod", taskDefinition=definition, count=1)["tasks"][0]
    moto_task_runs(account_id, ecs_region, "prod", task["taskArn"], old_digest)
    moto_move_tag(account_id, ecs_region, ecs_repo, "prod", new_digest)  # CI pushes prod again
    iam = session.client("iam", region_name=lambda_region)
    role = iam.create_role(RoleName="thumbnails", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    session.client("lambda", region_name=lambda_region).create_function(
        FunctionName="thumbnails", Role=role, PackageType="Image",
        Code={"ImageUri": f"{account_id}.dkr.ecr.{lambda_region}.amazonaws.com/{lambda_repo}:{lambda_tag}"})


def moto_move_tag(account_id: str, region: str, repository: str, tag: str, digest: str) -> None:
    """What ECR does when ``tag`` is pushed again: the tag moves to ``digest`` and the image that held it stays,
    untagged if that was its last tag (moto deletes that image instead)."""
    from moto.ecr.models import ecr_backends

    images = ecr_backends[account_id][region].repositories[repository].images
    for image in images:
        if tag in image.image_tags:
            image.remove_tag(tag)
            if not image.image_tags:
                image.image_tag = None  # type: ignore[assignment]  # moto types it str; untagged is None
    next(i for i in images if i.image_digest == digest).update_tag(tag)


def moto_task_runs(account_id: str, region: str, cluster: str, task_arn: str, digest: str) -> None:
    """The digest a running task's containers really run (AWS's containers[].imageDigest; moto reports none)."""
    from moto.ecs.models import ecs_backends

    for container in ecs_backends[account_id][region].tasks[cluster][task_arn].containers:
        container.imageDigest = digest  # type: ignore[attr-defined]  # moto's Container has no such field


# -- a Kubernetes API for the demo ------------------------------------------------------------------

KUBERNETES_LIST_PATHS = ("/api/v1/pods", "/apis/apps/v1/deployments", "/apis/apps/v1/replicasets",
                         "/apis/apps/v1/statefulsets", "/apis/apps/v1/daemonsets", "/apis/batch/v1/jobs",
                         "/apis/batch/v1/cronjobs")


def sample_deployment(namespace: str, name: str, image_uri: str, replicas: int = 0) -> dict:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": name, "image": image_uri}]}}}}


class SampleKubernetesApi:
    """A local stand-in of a Kubernetes API server for the demo and the tests: answers the list calls the bot
    makes (``objects``: path -> items), one item a page so that a client must follow ``continue``."""

    def __init__(self, objects: dict[str, list[dict]]):
        self.objects = objects
        self.paths: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                standin.paths.append(self.path)
                items = standin.objects.get(path)
                if items is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                start = int(params.get("continue", "0") or 0)
                limit = 1
                page = items[start:start + limit]
                meta = {"continue": str(start + limit)} if start + limit < len(items) else {}
                body = json.dumps({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": page}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, context: str) -> dict:
        """A kubeconfig whose ``context`` reaches this server."""
        return {"apiVersion": "v1", "kind": "Config", "current-context": context,
                "clusters": [{"name": "sample", "cluster": {"server": self.url}}],
                "users": [{"name": "sample", "user": {"token": "sample-token"}}],
                "contexts": [{"name": context, "context": {"cluster": "sample", "user": "sample"}}]}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
