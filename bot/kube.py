"""The only user of the Kubernetes client (the `kube` extra): what runs in the clusters of the kubeconfig
contexts in ECR_COST_KUBE_CONTEXTS, as image references.

Pods give the digest they run (`status.containerStatuses[].imageID`, init containers too); workload templates
(Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs) give what a workload scaled to zero or
crash-looping would pull next. Read-only: deploy/kubernetes-clusterrole.yaml has the RBAC.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence

from .core.inuse import Reference, SourceProblem, Usage, digest_of, parse_image_uri

logger = logging.getLogger(__name__)
PAGE = 500
_EKS_ARN = re.compile(r"^arn:aws[a-z-]*:eks:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):cluster/")
# (API group accessor, list method, kind, path from the object to its pod spec)
WORKLOADS = (
    ("AppsV1Api", "list_deployment_for_all_namespaces", "deployment", ("spec", "template", "spec")),
    ("AppsV1Api", "list_replica_set_for_all_namespaces", "replicaset", ("spec", "template", "spec")),
    ("AppsV1Api", "list_stateful_set_for_all_namespaces", "statefulset", ("spec", "template", "spec")),
    ("AppsV1Api", "list_daemon_set_for_all_namespaces", "daemonset", ("spec", "template", "spec")),
    ("BatchV1Api", "list_job_for_all_namespaces", "job", ("spec", "template", "spec")),
    ("BatchV1Api", "list_cron_job_for_all_namespaces", "cronjob", ("spec", "jobTemplate", "spec", "template", "spec")),
)


class KubernetesReader:
    def __init__(self, contexts: Sequence[str], kubeconfig: str | None = None):
        self._contexts = tuple(contexts)
        self._kubeconfig = kubeconfig

    def collect(self) -> tuple[list[Reference], list[SourceProblem]]:
        try:
            from kubernetes import client, config
        except ImportError:
            return [], [SourceProblem("kubernetes", "*", "*", "ECR_COST_KUBE_CONTEXTS is set but the Kubernetes "
                                      "client is not installed: pip install 'ecr-cost-bot[kube]'")]
        references, problems = [], []
        for context in self._contexts:
            where = _EKS_ARN.match(context)
            account_id, region = (where["account"], where["region"]) if where else ("", context)
            try:
                api = config.new_client_from_config(config_file=self._kubeconfig, context=context,
                                                    persist_config=False)
                references += self._context(client, api, context, account_id, region)
            except Exception as exc:  # noqa: BLE001 - an unreachable cluster is named, never fatal
                logger.warning("cannot read Kubernetes context %s: %s", context, exc)
                problems.append(SourceProblem("kubernetes", account_id or context, region,
                                              f"context {context}: {exc.__class__.__name__}: {str(exc)[:300]}"))
        return references, problems

    def _context(self, client, api, context: str, account_id: str, region: str) -> list[Reference]:
        found: list[Reference] = []

        def usage(kind: str, item: dict) -> Usage:
            meta = item.get("metadata", {})
            return Usage("kubernetes", f"{context}/{meta.get('namespace', '')}/{kind}/{meta.get('name', '')}",
                         account_id, region)

        for pod in _items(client.CoreV1Api(api).list_pod_for_all_namespaces):
            used_by = usage("pod", pod)
            status = pod.get("status", {})
            for container in [*status.get("containerStatuses", []), *status.get("initContainerStatuses", [])]:
                ref = digest_of(container.get("imageID") or "", container.get("image"))
                if ref is not None:
                    found.append(Reference(ref, used_by))
            found += _template_references(pod.get("spec", {}), used_by)
        for group, method, kind, path in WORKLOADS:
            for item in _items(getattr(getattr(client, group)(api), method)):
                spec = item
                for key in path:
                    spec = spec.get(key, {}) if isinstance(spec, dict) else {}
                found += _template_references(spec, usage(kind, item))
        return found


def _items(list_call) -> Iterator[dict]:
    """Every item of a list call, page by page (limit / continue), as plain JSON."""
    token = None
    while True:
        response = list_call(limit=PAGE, _continue=token, _preload_content=False) if token else \
            list_call(limit=PAGE, _preload_content=False)
        body = json.loads(response.data)
        yield from body.get("items", [])
        token = body.get("metadata", {}).get("continue")
        if not token:
            return


def _template_references(pod_spec: dict, usage: Usage) -> list[Reference]:
    found = []
    for container in [*pod_spec.get("containers", []), *pod_spec.get("initContainers", [])]:
        ref = parse_image_uri(container.get("image") or "")
        if ref is not None:
            found.append(Reference(ref, usage))
    return found
