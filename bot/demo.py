"""`ecr-cost-bot demo`: the product on an embedded sample registry (moto, in-process)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from .config import Settings

DEMO_ACCOUNT = "123456789012"  # moto's default account
DEMO_REGIONS = ("us-east-1", "eu-west-1")
DEMO_KUBE_CONTEXT = f"arn:aws:eks:us-east-1:{DEMO_ACCOUNT}:cluster/sample"


def sample_environment(endpoint: str | None = None) -> dict[str, str]:
    """Fake credentials, and the kept sample registry's endpoint when there is one."""
    env = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_SESSION_TOKEN": "demo",
           "AWS_DEFAULT_REGION": DEMO_REGIONS[0]}
    return {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": DEMO_REGIONS[0]} if endpoint else env


@contextmanager
def _sample_aws_environment(endpoint: str | None = None):
    """Fake credentials; no endpoint override (every AWS call stays inside moto), or the kept moto server's."""
    saved = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(sample_environment(endpoint))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_demo(settings: Settings, out: TextIO, folder: Path, keep: bool = False, port: int = 4566,
             until: Callable[[], None] | None = None) -> int:
    """The story on the sample registry. With ``keep``, the registry is a moto server on 127.0.0.1:``port`` that
    stays up after the story (with the database and the sample cluster) until ``until`` returns (by default:
    SIGINT or SIGTERM), and the ``export`` lines that point every command at it are printed."""
    try:
        from moto import mock_aws
    except ImportError:
        out.write("demo needs the sample registry: pip install 'ecr-cost-bot[demo]'\n")
        return 1
    from .render.text import scan_table, view_text
    from .sample import KUBERNETES_LIST_PATHS, SampleKubernetesApi, load_estate, sample_estate, sample_session
    from .wiring import build, cli_actor

    server = _start_registry(port, out) if keep else None
    if keep and server is None:
        return 2
    endpoint = f"http://127.0.0.1:{port}" if keep else None
    if keep:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("demo.db*"):  # a fresh story each time
            stale.unlink()
    workspace = nullcontext(str(folder.resolve())) if keep else tempfile.TemporaryDirectory(prefix="ecr-cost-demo-")
    with _sample_aws_environment(endpoint), (nullcontext() if keep else mock_aws()), workspace as workdir:
        now = datetime.now(UTC)
        estate = sample_estate()
        session = sample_session(DEMO_REGIONS[0])
        load_estate(session, DEMO_ACCOUNT, estate, now)
        out.write(f"Sample registry: {len(estate)} repositories, "
                  f"{sum(len(r.all_images()) for r in estate)} images in {', '.join(DEMO_REGIONS)} "
                  f"(account {DEMO_ACCOUNT}).\n\n")
        kube = SampleKubernetesApi({path: [] for path in KUBERNETES_LIST_PATHS})  # a cluster, empty for now
        kubeconfig = Path(workdir) / "kubeconfig"
        kubeconfig.write_text(json.dumps(kube.kubeconfig(DEMO_KUBE_CONTEXT)), encoding="utf-8")
        settings = replace(settings, regions=DEMO_REGIONS, role_arns=(), db_path=os.path.join(workdir, "demo.db"),
                           kube_contexts=(DEMO_KUBE_CONTEXT,), kubeconfig=str(kubeconfig))
        built = build(settings, session_factory=lambda role_arn: session)
        application = built.application
        try:
            out.write("== Last week's scan (the demo dates it 7 days ago) ==\n")
            result = _scan(application, out, now - timedelta(days=7))
            out.write("\n" + scan_table(result, settings.base_policy) + "\n")
            top = result.repositories[0]
            view = application.view(result, top)
            out.write(f"\nThe costliest repository, as `ecr-cost-bot repo {top.repository}` shows it:\n\n")
            out.write(view_text(view) + "\n")
            _size(result, application, out)
            adopted = _base_policy_savings(result, application, out)
            _workloads(adopted, result, application, session, kube, out)
            _adopt_and_expire(adopted, application, cli_actor, session, out)
            _owner_decisions(result, adopted, application, cli_actor, session, out)
            out.write("\n== This week's scan ==\n")
            this_week = _scan(application, out)
            _report(this_week, application, settings, now, folder, out)
            built.close()
            if keep:
                assert endpoint is not None  # set with keep
                _keep_serving(settings, endpoint, out, until or _until_signalled)
        finally:
            built.close()
            kube.stop()
            if server is not None:
                server.stop()
    return 0


def _start_registry(port: int, out: TextIO):
    """moto's server on 127.0.0.1:port, or None (and a line saying so) when the port is taken."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            out.write(f"demo --keep: cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another with "
                      f"--port N\n")
            return None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def _keep_serving(settings: Settings, endpoint: str, out: TextIO, until: Callable[[], None]) -> None:
    exports = {**sample_environment(endpoint), "ECR_COST_REGIONS": ",".join(DEMO_REGIONS),
               "ECR_COST_DB": settings.db_path, "KUBECONFIG": str(settings.kubeconfig),
               "ECR_COST_KUBE_CONTEXTS": ",".join(settings.kube_contexts)}
    out.write(f"\n== The sample registry stays up at {endpoint} ==\n\nPaste these lines into another shell; then "
              f"every command works on the sample (for example `ecr-cost-bot repo legacy/monolith`, "
              f"`ecr-cost-bot policy preview ml/training-gpu`), and so does `ecr-cost-bot serve` with your Slack "
              f"app's tokens:\n\n")
    out.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items()))
    out.write("\nCtrl-C (or SIGTERM) stops it.\n")
    out.flush()
    until()


def _until_signalled() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def _scan(application, out: TextIO, now: datetime | None = None):
    result = application.scan(now)
    out.write(f"scanned {len(result.repositories)} repositories: {result.api_calls} API requests, "
              f"{result.manifests_fetched} manifests fetched\n")
    return result


def _size(result, application, out: TextIO, name: str = "tools/ci-runner") -> None:
    """Why one repository is big, as `ecr-cost-bot size` shows it (moto serves no layer downloads: the Dockerfile
    steps, read from config blobs with ecr:GetDownloadUrlForLayer in AWS, are not shown here)."""
    from .render.text import size_text

    _, row = application.find(name, result)
    report = application.size(result, row, read_steps=False)
    out.write(f"\nWhy {name} is big, as `ecr-cost-bot size {name}` shows it (in AWS, with "
              f"ecr:GetDownloadUrlForLayer, each layer also names its Dockerfile step):\n\n")
    out.write(size_text(report) + "\n")


def _base_policy_savings(result, application, out: TextIO) -> list:
    """What adopting the base policy would free (its protected form: in-use images kept), repository by repository,
    the same figures every surface states; returns the top 3 rows."""
    from .adoption import protection_note
    from .core.analysis import display_names
    from .format import per_month, size, usd
    from .render.text import preview_text, text_table

    without = [row for row in result.repositories if not row.has_lifecycle_policy]
    previews = sorted(((row, application.preview(row, scan=result)) for row in without),
                      key=lambda pair: -pair[1].savings.bytes_freed)
    labels = display_names(result.repositories)
    rows = [[labels[row.arn], str(p.savings.expiring_count), str(p.image_count), size(p.savings.bytes_freed),
             usd(p.savings.monthly_usd)] for row, p in previews[:10]]
    total_bytes = sum(p.savings.bytes_freed for _, p in previews)
    total_usd = sum(p.savings.monthly_usd for _, p in previews)
    out.write(f"\nAdopting the base policy (untagged keep 1, latest keep 1, v* keep 9, any keep 20; in-use images "
              f"kept) on the {len(without)} repositories without a policy would free {size(total_bytes)}, "
              f"{per_month(total_usd)} of {per_month(sum(r.monthly_cost_usd for r in without))}:\n\n")
    out.write("\n".join(text_table(["repository", "expire", "of", "freed", "USD/month"], rows,
                                    right={1, 2, 3, 4})))
    if previews:
        row, best = previews[0]
        out.write(f"\n\nWhat adopting it expires in the first one (`ecr-cost-bot policy preview {row.repository}`):"
                  f"\n\n")
        out.write(preview_text(best.ref, best.adopted or best.result, best.savings, best.source, limit=12,
                               note=protection_note(best)) + "\n")
    return [row for row, _ in previews[:3]]


def _workloads(rows, scan, application, session, kube, out: TextIO) -> None:
    """What runs: an ECS service whose tag moved (its task still runs the old, now untagged digest) on the first
    repository, a Lambda function on an old release of the second, a Kubernetes Deployment scaled to zero on the
    third; what the base policy as written would do."""
    from .adoption import protection_note
    from .render.text import adopting_sentence, as_written_sentence, text_table
    from .sample import deploy_sample_workloads, sample_deployment

    first, second, third = rows[0], rows[1], rows[2]
    images = sorted(application.store.snapshot_images(scan.scan_id, first.arn), key=lambda i: i.pushed_at)
    untagged = [i for i in images if not i.tags]
    old = untagged[0] if len(untagged) > 1 else images[0]
    newest = images[-1]
    expiring = [d.image for d in application.preview(second, scan=scan).result.decisions
                if d.action == "expire" and d.image.tags]
    deploy_sample_workloads(session, DEMO_ACCOUNT, first.repository, first.region, old.digest, newest.digest,
                            second.repository, second.region, expiring[-1].tags[0])
    batch = [d.image for d in application.preview(third, scan=scan).result.decisions
             if d.action == "expire" and d.image.tags][-1]
    kube.objects["/apis/apps/v1/deployments"].append(sample_deployment(
        "data", "nightly-batch", f"{DEMO_ACCOUNT}.dkr.ecr.{third.region}.amazonaws.com/{third.repository}:"
                                 f"{batch.tags[0]}"))  # scaled to zero between runs: it still counts
    application.in_use.references(fresh=True)  # the runtimes as they are now that the workloads run
    out.write("\n== Where images run (ECS, Lambda, Kubernetes, recent pulls), as `ecr-cost-bot in-use` shows it ==\n\n")
    rows = []
    for row in (first, second, third):
        found = application.preview(row, fresh=True)
        tags = {i.digest: i.tags for i in found.images}
        rows += [[row.repository, digest[7:19], ", ".join(tags.get(digest, ())) or "<untagged>",
                  f"{u.kind} {u.name}", "would expire" if digest in found.in_use_expiring else ""]
                 for digest, usages in sorted(found.used.items()) for u in usages if u.kind != "recent-pull"]
        pulled = sum(1 for usages in found.used.values() if all(u.kind == "recent-pull" for u in usages))
        if pulled:
            rows.append([row.repository, "", "", f"and {pulled} images pulled in the last "
                         f"{application.settings.recent_pull_days} days", ""])
    out.write("\n".join(text_table(["repository", "digest", "tags", "used by", "base policy as written"], rows,
                                    right=set())) + "\n\n")
    for row in (first, second, third):
        found = application.preview(row, fresh=True)
        written = as_written_sentence(found.savings)
        out.write(f"{row.repository}: adopting the base policy {adopting_sentence(found.savings)}"
                  + (f"; {written}" if written else "") + f". {protection_note(found)}\n")


def _adopt_and_expire(rows, application, actor_for, session, out: TextIO) -> None:
    """The owners adopt the base policy; then what ECR's lifecycle run would do with the policy now in AWS (the
    protected form), done by hand (moto has none)."""
    out.write("\n== During the week ==\n")
    for row in rows:
        owner = row.owners[0] if row.owners else "U0DEMO001"
        decision = application.adopt(row, actor_for(owner)).decision
        expired = _lifecycle_run(row, decision.policy_after, application, session)
        out.write(f"{owner} adopted the base policy on {row.repository} (decision #{decision.id}, previous policy "
                  f"backed up); ECR's lifecycle run expired {expired} images (moto has no lifecycle "
                  f"runs: the demo deletes what the policy in AWS expires)\n")
    _still_running(rows, application, session, out)


def _lifecycle_run(row, policy_text: str, application, session) -> int:
    """What ECR's daily lifecycle run does with ``policy_text`` in AWS, done by hand (moto has none)."""
    expiring = [d.image.digest for d in application.preview(row, policy_text, fresh=True).result.decisions
                if d.action == "expire"]
    client = session.client("ecr", region_name=row.region)
    for start in range(0, len(expiring), 100):
        client.batch_delete_image(repositoryName=row.repository,
                                  imageIds=[{"imageDigest": d} for d in expiring[start:start + 100]])
    return len(expiring)


def _still_running(rows, application, session, out: TextIO) -> None:
    """After the lifecycle runs: every image that runs is still in ECR."""
    for row in rows:
        used = set(application.preview(row, fresh=True).used)
        client = session.client("ecr", region_name=row.region)
        live = {d["imageDigest"] for page in client.get_paginator("describe_images").paginate(
            repositoryName=row.repository) for d in page["imageDetails"]}
        kept = len(used & live)
        out.write(f"{row.repository}: {kept} of {len(used)} images in use are still in ECR"
                  + (" (all of them)" if kept == len(used) else ": SOME RUNNING IMAGES WERE EXPIRED") + "\n")


def _owner_decisions(scan, adopted, application, actor_for, session, out: TextIO) -> None:
    """Two more owners decide, as the Slack modals let them: one tunes the base policy, one declines it with a
    reason (an exemption the report lists)."""
    from .core.tuning import Tuning
    from .format import per_month

    chosen = {r.arn for r in adopted}
    candidates = [r for r in scan.repositories if not r.has_lifecycle_policy and r.owners and r.arn not in chosen]
    if len(candidates) < 2:
        return
    tuner, decliner = candidates[0], candidates[1]
    out.write("\n== Owners decide (Adjust… and Decline… in Slack) ==\n\n")
    tuning = Tuning(versions=3, overall=10)
    found = application.tuned_preview(tuner, tuning, scan)
    change = application.adopt_tuned(tuner, actor_for(tuner.owners[0]), tuning)
    view = application.view_after_change(tuner.arn)
    out.write(f"{tuner.owners[0]} tuned the base policy on {tuner.repository} (keep 3 versions, 10 overall), "
              f"previewed at {per_month(found.savings.monthly_usd)} (decision #{change.decision.id}); its status is "
              f"now \"{view.lifecycle_status}\"; ECR's lifecycle run expired "
              f"{_lifecycle_run(tuner, change.decision.policy_after, application, session)} images\n")
    application.decline(decliner, actor_for(decliner.owners[0]), "data_retention", "audit: images kept 7 years")
    out.write(f"{decliner.owners[0]} declined the base policy on {decliner.repository}: exempt (data retention), "
              f"no more nudges; the weekly report lists it with its reason\n")


def _report(scan, application, settings: Settings, now: datetime, folder: Path, out: TextIO) -> None:
    """The weekly report: text on screen, Block Kit JSON and chart PNG in ``folder``, a Block Kit Builder link."""
    from .jobs import period_start
    from .render.chart import chart_png
    from .render.report import report_message, report_text

    report = application.weekly_report(scan, period_start(settings, now))
    message = report_message(report)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(message, indent=2), encoding="utf-8")
    (folder / "report-chart.png").write_bytes(chart_png(report))
    out.write("\n== The weekly report, as posted to the report channel ==\n\n")
    out.write(report_text(report) + "\n\n")
    out.write(f"Block Kit JSON: {folder / 'report.json'}; chart (posted in the report's thread): "
              f"{folder / 'report-chart.png'}\n")
    link = "https://app.slack.com/block-kit-builder/#" + quote(json.dumps({"blocks": message["blocks"]}))
    out.write(f"See it as Slack shows it (Block Kit Builder): {link}\n")
