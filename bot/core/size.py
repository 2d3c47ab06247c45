"""Why a repository is big: its largest images and layers, the bytes each push adds, the base its images are built
on, the Dockerfile step behind a layer, and advice ranked by what it costs. Pure: data in, figures out.

Layer positions are counted from the base (1 = the bottom layer). A manifest's blobs are its config first, then its
layers (``parse_manifest`` keeps that order), so ``blobs[1:]`` are the layers.
"""
from __future__ import annotations

import heapq
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter

from ..format import per_month, size
from .cost import image_manifests, monthly_cost
from .models import Image, Manifest, RepositoryCost

LARGEST_IMAGES = 10  # images shown, and whose config blobs are read for the Dockerfile steps
TOP_LAYERS = 20
CHURN_PUSHES = 20  # churn is measured over the last this many pushes
CHURN_DAYS = 28  # new_bytes_per_week is measured over this many days
SMALL_CHANGE = 16 * 2**20  # a layer this small that changes with every push is the code: it must change
MAX_STEP = 300  # characters of a Dockerfile step kept
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Push:
    """One image as pushed: an image manifest, or an index with its platform manifests (``leaves``)."""

    image: Image
    leaves: tuple[Manifest, ...]
    blobs: dict[str, int]  # every blob (configs and layers) of the push, each once
    bytes: int  # their sizes summed

    @property
    def label(self) -> str:
        return self.image.tags[0] if self.image.tags else self.image.digest[:19]


def layers_of(leaf: Manifest) -> tuple[tuple[str, int], ...]:
    return leaf.blobs[1:]


def config_of(leaf: Manifest) -> str:
    return leaf.blobs[0][0]


def pushes(images: Iterable[Image], manifests: Mapping[str, Manifest]) -> tuple[list[Push], list[Image]]:
    """The repository's pushes, oldest first, and the images whose manifests are unknown. A platform manifest of an
    index in the repository is part of that index's push unless it was tagged (pushed on its own)."""
    children = {c for m in manifests.values() for c in m.children}
    found: list[Push] = []
    unknown: list[Image] = []
    for image in images:
        if image.digest in children and not image.tags:
            continue
        manifest = manifests.get(image.digest)
        if manifest is not None and manifest.blobs and not manifest.problem:  # an image manifest: the common case
            blobs = dict(manifest.blobs)
            found.append(Push(image, (manifest,), blobs, sum(blobs.values())))
            continue
        leaves = image_manifests(image.digest, manifests)
        if leaves is None:
            unknown.append(image)
            continue
        blobs = {}
        for leaf in leaves:
            blobs.update(leaf.blobs)
        found.append(Push(image, tuple(leaves), blobs, sum(blobs.values())))
    found.sort(key=lambda p: (p.image.pushed_at or _EPOCH, p.image.digest))
    return found, unknown


# -- the Dockerfile steps: a config blob's history ------------------------------------------------------------------

_ARGS = re.compile(r"^\|\d+\s+(?:\S+=\S*\s+)*")


def dockerfile_step(created_by: str) -> str:
    """A history entry's ``created_by`` as the Dockerfile line it came from (classic builder and BuildKit forms)."""
    step = created_by.strip().removesuffix("# buildkit").strip()
    step = _ARGS.sub("", step)  # RUN with build arguments: "|2 A=1 B=2 /bin/sh -c ..."
    if step.startswith("/bin/sh -c #(nop)"):
        step = step.removeprefix("/bin/sh -c #(nop)").strip()
    elif step.startswith("/bin/sh -c "):
        step = "RUN " + step.removeprefix("/bin/sh -c ").strip()
    elif step.startswith("RUN /bin/sh -c "):
        step = "RUN " + step.removeprefix("RUN /bin/sh -c ").strip()
    step = " ".join(step.split())
    return step if len(step) <= MAX_STEP else step[:MAX_STEP - 1] + "…"


def layer_steps(config_text: str | bytes) -> tuple[tuple[str | None, ...] | None, str | None]:
    """(the Dockerfile step of each layer, bottom first; a problem). From an image config's ``history``, skipping
    ``empty_layer`` entries (ENV, CMD, ...). Never raises."""
    try:
        doc = json.loads(config_text)
    except (ValueError, TypeError, RecursionError):
        return None, "the config blob is not valid JSON"
    history = doc.get("history") if isinstance(doc, dict) else None
    if not isinstance(history, list) or not history:
        return None, "the config blob has no history"
    steps: list[str | None] = []
    for entry in history:
        if not isinstance(entry, dict) or entry.get("empty_layer") is True:
            continue
        created_by = entry.get("created_by")
        steps.append(dockerfile_step(created_by) if isinstance(created_by, str) and created_by.strip() else None)
    return tuple(steps), None


def configs_to_read(found: Sequence[Push], limit: int = LARGEST_IMAGES) -> list[str]:
    """Config blob digests worth reading: those of the largest images and of the newest push (whose layer positions
    the churn advice names)."""
    chosen = sorted(found, key=lambda p: (-p.bytes, p.image.digest))[:limit] + list(found[-1:])
    digests: list[str] = []
    for push in chosen:
        for leaf in push.leaves:
            if config_of(leaf) not in digests:
                digests.append(config_of(leaf))
    return digests


def _steps_by_layer(found: Sequence[Push], steps: Mapping[str, Sequence[str | None] | None]
                    ) -> tuple[dict[str, str], dict[tuple[str, int], str]]:
    """layer digest -> step, and (config digest, position) -> step, where a config's history matches its layers."""
    by_layer: dict[str, str] = {}
    by_position: dict[tuple[str, int], str] = {}
    if not steps:
        return by_layer, by_position
    for push in found:
        for leaf in push.leaves:
            known = steps.get(config_of(leaf))
            layers = layers_of(leaf)
            if known is None or len(known) != len(layers):
                continue
            for position, ((digest, _), step) in enumerate(zip(layers, known, strict=True)):
                if step is not None:
                    by_layer.setdefault(digest, step)
                    by_position[(config_of(leaf), position)] = step
    return by_layer, by_position


# -- what the rest of the estate shares ------------------------------------------------------------------------------

@dataclass
class _Holder:
    images: int
    first_pushed: datetime
    first_label: str
    repository: str
    exact: tuple[datetime, str] | None = None  # the earliest image that is exactly this base


@dataclass(frozen=True)
class Base:
    """The longest layer prefix that images in other repositories start with too."""

    name: str  # repository:tag where it appears
    bytes: int
    layer_count: int
    repository_count: int  # repositories with images built on it (this one included)


class EstateShare:
    """What one repository (the subject) shares with the rest of the estate, fed one repository at a time: per blob,
    how many repositories hold it; per layer prefix of the subject's images, which repositories have images that
    start with it. Memory follows the subject's blobs and the shared prefixes, not the estate."""

    def __init__(self, arn: str, name: str, found: Sequence[Push]):
        self.arn, self.name = arn, name
        self.blob_repositories: dict[str, int] = dict.fromkeys(chain.from_iterable(push.blobs for push in found), 1)
        self.prefixes: dict[tuple[str, ...], dict[str, _Holder]] = {}

    def add(self, arn: str, name: str, images: Iterable[Image], manifests: Mapping[str, Manifest]) -> None:
        if arn == self.arn:
            return
        found, _ = pushes(images, manifests)
        held: set[str] = set()
        subject = self.blob_repositories
        for push in found:
            held.update(d for d in push.blobs if d in subject)
            self._hold(push, arn, name, subject.__contains__)
        for digest in held:
            subject[digest] += 1

    def _hold(self, push: Push, arn: str, name: str, wanted) -> None:
        """Counts ``push`` (another repository's) as holding each of its layer prefixes made of the subject's layers."""
        pushed = push.image.pushed_at or _EPOCH
        for leaf in push.leaves:
            layers = layers_of(leaf)
            prefix: tuple[str, ...] = ()
            for position, (digest, _) in enumerate(layers):
                if not wanted(digest):
                    break
                prefix = prefix + (digest,)
                holders = self.prefixes.setdefault(prefix, {})
                self._count(holders, arn, name, pushed, push.label, 1, position == len(layers) - 1)

    @staticmethod
    def _count(holders: dict[str, _Holder], arn: str, name: str, pushed: datetime, label: str, images: int,
               exact: bool) -> None:
        holder = holders.get(arn)
        if holder is None:
            holder = holders[arn] = _Holder(0, pushed, label, name)
        holder.images += images
        if pushed < holder.first_pushed:
            holder.first_pushed, holder.first_label = pushed, label
        if exact and (holder.exact is None or pushed < holder.exact[0]):
            holder.exact = (pushed, label)

    def base(self, found: Sequence[Push], sizes: Mapping[str, int]) -> Base | None:
        """The base most of the subject's image manifests are built on (the larger one on a tie): for each, the
        longest layer prefix that another repository's images start with too. Call once, after every other
        repository was added."""
        longest = max(map(len, self.prefixes), default=0)
        if not longest:
            return None
        # image manifests grouped by their first ``longest`` layers: the base is found once per group
        groups: dict[tuple[tuple[str, ...], bool], list] = {}
        for push in found:
            pushed = push.image.pushed_at or _EPOCH
            for leaf in push.leaves:
                key = (tuple(d for d, _ in leaf.blobs[1:longest + 1]), len(leaf.blobs) <= longest + 1)
                group = groups.get(key)
                if group is None:
                    groups[key] = [1, pushed, push.label]
                else:
                    group[0] += 1
                    if pushed < group[1]:
                        group[1], group[2] = pushed, push.label
        counted: Counter[tuple[str, ...]] = Counter()
        for (head, _), (images, _, _) in groups.items():
            base: tuple[str, ...] = ()
            for length in range(1, len(head) + 1):
                if head[:length] not in self.prefixes:
                    break
                base = head[:length]
            if base:
                counted[base] += images
        if not counted:
            return None
        prefix = max(counted, key=lambda p: (counted[p], sum(sizes.get(d, 0) for d in p), len(p)))
        holders = self.prefixes[prefix]
        for (head, complete), (images, pushed, label) in groups.items():
            if head[:len(prefix)] == prefix:
                self._count(holders, self.arn, self.name, pushed, label, images, complete and head == prefix)
        exact = [(h.exact[0], f"{h.repository}:{h.exact[1]}") for h in holders.values() if h.exact]
        if exact:  # the base image itself is in the registry
            name = min(exact)[1]
        else:  # where it appears first (then: most)
            first = min(holders.values(), key=lambda h: (h.first_pushed, -h.images, h.repository))
            name = f"{first.repository}:{first.first_label}"
        return Base(name, sum(sizes.get(d, 0) for d in prefix), len(prefix), len(holders))


# -- the report --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageSize:
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | None
    bytes: int  # every blob of the image (an index: of its platform manifests)
    unique_bytes: int  # blobs no other image of the repository references: what deleting it alone frees


@dataclass(frozen=True)
class LayerSize:
    digest: str
    bytes: int
    image_count: int  # images of this repository that hold it
    repository_count: int  # scanned repositories whose images hold it (each stores and pays for it)
    created_by: str | None  # the Dockerfile step, when a config blob could be read


@dataclass(frozen=True)
class Churn:
    pushes: int  # pushes measured (the last CHURN_PUSHES)
    median_new_bytes_per_push: int
    p90_new_bytes_per_push: int
    new_bytes_per_week: int  # over the last CHURN_DAYS days


@dataclass(frozen=True)
class RebuiltLayer:
    position: int  # 1-based, from the base
    of: int  # layers in the newest push
    bytes: int  # median size when new
    new_in: int  # of the last ``pushes`` pushes
    pushes: int
    stored_copies_bytes: int  # the distinct blobs stored at this position, all but the largest
    created_by: str | None
    after: int | None = None  # the lower layer (1-based) whose change rebuilds this one; None: it changes itself


@dataclass(frozen=True)
class Advice:
    kind: str  # rebuilt-layer | large-images | shared-base
    text: str
    monthly_usd: float


@dataclass(frozen=True)
class SizeReport:
    row: RepositoryCost
    price_per_gb_month: float
    large_image_bytes: int
    image_count: int  # pushes analysed
    largest_images: list[ImageSize]
    layers: list[LayerSize]
    churn: Churn
    rebuilt: list[RebuiltLayer]
    base: Base | None
    advice: list[Advice]
    notices: list[str] = field(default_factory=list)


def p90(values: Sequence[int]) -> int:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)] if ordered else 0


def churn(found: Sequence[Push], now: datetime) -> tuple[Churn, list[set[str]]]:
    """For each push in push order, the blobs the repository had never held before it; the figures over the last
    pushes and days; and the new blob sets of the last CHURN_PUSHES pushes."""
    seen: set[str] = set()
    new_sets: list[set[str]] = []
    weekly = 0
    since = now - timedelta(days=CHURN_DAYS)
    for push in found:
        new = push.blobs.keys() - seen
        seen.update(new)
        new_sets.append(new)
        if push.image.pushed_at is not None and push.image.pushed_at >= since:
            weekly += sum(push.blobs[d] for d in new)
    recent = list(zip(found[-CHURN_PUSHES:], new_sets[-CHURN_PUSHES:], strict=True))
    sizes = [sum(p.blobs[d] for d in new) for p, new in recent]
    figures = Churn(len(recent), round(statistics.median(sizes)) if sizes else 0, p90(sizes),
                    weekly * 7 // CHURN_DAYS)
    return figures, new_sets[-CHURN_PUSHES:]


def new_bytes_per_week(images: Iterable[Image], manifests: Mapping[str, Manifest], now: datetime) -> int:
    return churn(pushes(images, manifests)[0], now)[0].new_bytes_per_week


def rebuilt_layers(found: Sequence[Push], new_sets: Sequence[set[str]],
                   steps_at: Mapping[tuple[str, int], str]) -> list[RebuiltLayer]:
    """Layer positions new in most of the last pushes. When several are, the smallest is taken as the code (it must
    change with each push); the others are rebuilt for nothing and are returned, largest first."""
    recent = found[-CHURN_PUSHES:]
    if len(recent) < 3:
        return []
    new_in: Counter[int] = Counter()
    sizes: dict[int, list[int]] = {}
    for push, new in zip(recent, new_sets, strict=True):
        positions: dict[int, int] = {}
        for leaf in push.leaves:
            for position, (digest, layer_bytes) in enumerate(layers_of(leaf)):
                if digest in new:
                    positions[position] = max(positions.get(position, 0), layer_bytes)
        for position, layer_bytes in positions.items():
            new_in[position] += 1
            sizes.setdefault(position, []).append(layer_bytes)
    rebuilt = [p for p, n in new_in.items() if n * 2 > len(recent)]
    if not rebuilt:
        return []
    median = {p: round(statistics.median(sizes[p])) for p in rebuilt}
    # the lowest layer new in most pushes is what changes; every layer above it is rebuilt because of it. When it
    # is small it is the code, which must change: only what it drags along is waste
    cause = min(rebuilt)
    newest = found[-1].leaves[0] if found[-1].leaves else None
    of = len(layers_of(newest)) if newest else 0
    at_position: dict[int, dict[str, int]] = {p: {} for p in rebuilt}
    for push in found:
        for leaf in push.leaves:
            blobs = leaf.blobs  # the config, then the layers
            for position, copies in at_position.items():
                if position + 1 < len(blobs):
                    digest, layer_bytes = blobs[position + 1]
                    copies[digest] = layer_bytes
    out = []
    for position in rebuilt:
        if position == cause and median[position] < SMALL_CHANGE:
            continue
        stored = at_position[position].values()
        step = steps_at.get((config_of(newest), position)) if newest else None
        out.append(RebuiltLayer(position + 1, of, median[position], new_in[position], len(recent),
                                sum(stored) - max(stored), step, None if position == cause else cause + 1))
    return sorted(out, key=lambda r: (-r.stored_copies_bytes, r.position))


def human(byte_count: int) -> str:
    return size(byte_count)


def _usd(amount: float) -> str:
    return per_month(amount)


def size_report(row: RepositoryCost, found: Sequence[Push], unknown: Sequence[Image], share: EstateShare,
                steps: Mapping[str, Sequence[str | None] | None], *, price_per_gb_month: float,
                large_image_bytes: int, now: datetime, notices: Sequence[str] = ()) -> SizeReport:
    """The whole answer for one repository. ``share`` has been fed every other scanned repository; ``steps``:
    config digest -> the Dockerfile step of each layer (None: unknown)."""
    holders: Counter[str] = Counter(chain.from_iterable(push.blobs for push in found))
    sizes: dict[str, int] = {}
    for push in found:
        sizes.update(push.blobs)
    configs = {leaf.blobs[0][0] for push in found for leaf in push.leaves}
    by_layer, by_position = _steps_by_layer(found, steps)

    largest = heapq.nsmallest(LARGEST_IMAGES, found, key=lambda p: (-p.bytes, p.image.digest))
    images = [ImageSize(p.image.digest, p.image.tags, p.image.pushed_at, p.bytes,
                        sum(s for d, s in p.blobs.items() if holders[d] == 1)) for p in largest]
    biggest: list[tuple[str, int]] = []
    for digest, layer_bytes in sorted(sizes.items(), key=itemgetter(1), reverse=True):  # a C sort beats a heap here
        if len(biggest) >= TOP_LAYERS and layer_bytes < biggest[-1][1]:
            break
        if digest not in configs:
            biggest.append((digest, layer_bytes))
    biggest = sorted(biggest, key=lambda pair: (-pair[1], pair[0]))[:TOP_LAYERS]  # ties: by digest
    layers = [LayerSize(d, s, holders[d], share.blob_repositories.get(d, 1), by_layer.get(d)) for d, s in biggest]
    figures, new_sets = churn(found, now)
    rebuilt = rebuilt_layers(found, new_sets, by_position)
    base = share.base(found, sizes)

    def usd(byte_count: int) -> float:
        return monthly_cost(byte_count, price_per_gb_month)

    advice = []
    for layer in rebuilt:
        step = f" ({layer.created_by})" if layer.created_by else ""
        why = (f"it is rebuilt every time, because layer {layer.after} below it changes with every push; put "
               f"dependency installation before copying the code so it is cached" if layer.after is not None else
               "it changes although the layers below it do not, so it is stored again with every push; pin what it "
               "installs (lock files, exact versions) or split what changes from what does not, stable part first")
        advice.append(Advice("rebuilt-layer", (
            f"layer {layer.position} of {layer.of}{step}, {human(layer.bytes)}, new in {layer.new_in} of the last "
            f"{layer.pushes} pushes: {why}. Its {human(layer.stored_copies_bytes)} of repeated copies cost "
            f"{_usd(usd(layer.stored_copies_bytes))}"), usd(layer.stored_copies_bytes)))
    large = sorted((p for p in found if p.bytes > large_image_bytes), key=lambda p: (-p.bytes, p.image.digest))
    if large:
        large_digests = {p.image.digest for p in large}
        only_large: set[str] = set()
        others: set[str] = set()
        for push in found:
            (only_large if push.image.digest in large_digests else others).update(push.blobs)
        alone = sum(sizes[d] for d in only_large - others)
        top = large[0]
        advice.append(Advice("large-images", (
            f"{len(large)} image{'s' if len(large) > 1 else ''} above {human(large_image_bytes)} "
            f"(largest: {top.label}, "
            f"{human(top.bytes)}): a multi-stage build that copies only what runs, and a slimmer base, shrink each; "
            f"the {human(alone)} only they hold cost {_usd(usd(alone))}"), usd(alone)))
    if base is not None and base.repository_count >= 2 and base.bytes * 4 >= large_image_bytes:
        advice.append(Advice("shared-base", (
            f"built on {base.name} ({human(base.bytes)}, in {base.repository_count} repositories): each repository "
            f"stores its own copy; a slimmer base (a -slim or -runtime variant, or distroless) shrinks all "
            f"{base.repository_count} copies, which cost {_usd(usd(base.bytes * base.repository_count))}"),
            usd(base.bytes * base.repository_count)))
    advice.sort(key=lambda a: (-a.monthly_usd, a.kind))
    all_notices = list(notices)
    if unknown:
        all_notices.append(f"{len(unknown)} images have no readable manifest and are left out")
    return SizeReport(row, price_per_gb_month, large_image_bytes, len(found), images, layers, figures, rebuilt, base,
                      advice, all_notices)
