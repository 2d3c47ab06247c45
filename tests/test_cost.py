"""The pure cost model: manifests, unique blobs, owners, unused."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.cost import (
    missing_children,
    monthly_cost,
    parse_manifest,
    parse_owners,
    price_repository,
    stored_bytes,
    unique_blobs,
)
from bot.core.models import Image, Manifest, RepositoryInventory, RepositoryRef
from bot.sample import blob, image, index

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def manifests_of(*samples):
    out = {}
    for sample in samples:
        for item in (*sample.children, sample):
            out[item.digest] = parse_manifest(item.digest, item.media_type, item.manifest)
    return out


def as_image(sample, days_ago=1, pulled=None):
    return Image(sample.digest, sample.tags, sample.listed_bytes or 0, NOW - timedelta(days=days_ago),
                 None if pulled is None else NOW - timedelta(days=pulled), sample.media_type)


def test_parse_docker_manifest_lists_config_and_layers():
    sample = image([blob("a", 10), blob("b", 20)], blob("cfg", 3))
    manifest = parse_manifest(sample.digest, None, sample.manifest)
    assert manifest.problem is None
    assert manifest.blobs == (blob("cfg", 3), blob("a", 10), blob("b", 20))
    assert manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"


def test_parse_index_lists_children():
    children = [image([blob("x", 1)], blob("c1", 1)), image([blob("y", 1)], blob("c2", 1))]
    manifest = parse_manifest("sha256:idx", None, index(children).manifest)
    assert manifest.children == tuple(c.digest for c in children) and manifest.blobs == ()


@pytest.mark.parametrize("text, expected", [
    ("not json {", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "fsLayers": [{"blobSum": "sha256:a"}]}), "schema 1"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:c"}, "layers": []}), "no readable layer list"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:c", "size": -5}, "layers": []}), "bad size"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:c", "size": "12"}, "layers": []}), "bad size"),
    (json.dumps({"schemaVersion": 2}), "no readable layer list"),
    ("", "not valid JSON"),
    (json.dumps({"schemaVersion": 2, "mediaType": ["not", "a", "string"]}), "no readable layer list"),
    ("[" * 100_000, "not valid JSON"),
])
def test_unreadable_manifests_are_named_not_raised(text, expected):
    manifest = parse_manifest("sha256:d", None, text)
    assert manifest.problem and expected in manifest.problem and "sha256:d" in manifest.problem


def test_shared_layers_count_once_and_an_index_is_resolved_to_its_children():
    base = [blob("os", 100), blob("runtime", 50)]
    one, two = image(base + [blob("app1", 7)], blob("c1", 1)), image(base + [blob("app2", 9)], blob("c2", 2))
    amd, arm = image(base + [blob("amd", 30)], blob("ca", 3)), image(base + [blob("arm", 40)], blob("cr", 4))
    multi = index([amd, arm], ("v1",))
    manifests = manifests_of(one, two, multi)
    images = [as_image(one), as_image(two), as_image(multi), as_image(amd), as_image(arm)]
    assert stored_bytes(images, manifests) == 150 + 7 + 9 + 30 + 40 + 1 + 2 + 3 + 4
    # the playbook's sum counts the base in every image, and the index once more as its largest child
    assert sum(i.listed_bytes for i in images) == 158 + 161 + 194 + 183 + 194


def test_an_image_whose_manifest_is_unknown_is_priced_by_its_listed_size():
    known = image([blob("os", 100)], blob("c", 1))
    lost = Image("sha256:lost", ("v2",), 555, NOW)
    broken = Image("sha256:broken", (), 77, NOW)
    manifests = manifests_of(known) | {"sha256:broken": parse_manifest("sha256:broken", None, "oops")}
    blobs, unknown = unique_blobs([as_image(known), lost, broken], manifests)
    assert unknown == [lost, broken]
    assert stored_bytes([as_image(known), lost, broken], manifests) == 101 + 555 + 77


def test_an_index_with_a_missing_child_is_unknown_and_the_child_is_asked_for():
    child = image([blob("os", 100)], blob("c", 1))
    multi = index([child, image([blob("x", 5)], blob("c2", 1))])
    manifests = manifests_of(child) | {multi.digest: parse_manifest(multi.digest, None, multi.manifest)}
    assert missing_children(manifests) == {multi.children[1].digest}
    assert stored_bytes([as_image(multi)], manifests) == 101 + multi.listed_bytes


layers = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 10**9)), min_size=1, max_size=6)


@given(st.lists(layers, min_size=1, max_size=8), st.randoms())
def test_stored_bytes_is_the_union_of_blobs_whatever_the_order_or_duplication(image_layers, rnd):
    sizes = {}  # a digest has one size: content addressing
    samples = []
    for n, spec in enumerate(image_layers):
        blobs = [blob(name, sizes.setdefault(name, size)) for name, size in spec]
        samples.append(image(blobs, blob(f"cfg{n}", n)))
    manifests = manifests_of(*samples)
    images = [as_image(s) for s in samples]
    expected = sum(sizes[name] for name in {name for spec in image_layers for name, _ in spec}) + \
        sum(range(len(samples)))
    assert stored_bytes(images, manifests) == expected
    shuffled = images + images[: len(images) // 2]
    rnd.shuffle(shuffled)
    assert stored_bytes(shuffled, manifests) == expected
    assert stored_bytes(images, manifests) <= sum(i.listed_bytes for i in images)


def test_monthly_cost_uses_binary_gigabytes():
    assert monthly_cost(2**30, 0.10) == pytest.approx(0.10)
    assert monthly_cost(5 * 2**30, 0.07) == pytest.approx(0.35)


@pytest.mark.parametrize("value, owners, problems", [
    ("U012AB3CD", ("U012AB3CD",), 0),
    ("U012AB3CD alice@example.com", ("U012AB3CD", "alice@example.com"), 0),
    ("U012AB3CD+W0BOB1234+U012AB3CD", ("U012AB3CD", "W0BOB1234"), 0),
    ("  team-payments  ", (), 1),
    ("alice@example <!channel>", (), 2),
    ("", (), 0),
    (None, (), 0),
])
def test_owner_tag_parsing(value, owners, problems):
    parsed, found = parse_owners(value)
    assert parsed == owners and len(found) == problems


def _inventory(images, tags=None, created_days_ago=400, policy=None):
    ref = RepositoryRef("123456789012", "us-east-1", "svc", "arn:aws:ecr:us-east-1:123456789012:repository/svc")
    manifests: dict[str, Manifest] = {}
    return RepositoryInventory(ref, NOW - timedelta(days=created_days_ago), tags or {}, policy, images, manifests)


@pytest.mark.parametrize("pushed, pulled, unused", [
    (10, None, False), (91, None, True), (200, 5, False), (200, 95, True), (89, 300, False),
])
def test_unused_means_no_push_and_no_pull_within_the_window(pushed, pulled, unused):
    images = [Image("sha256:a", ("v1",), 10, NOW - timedelta(days=pushed),
                    None if pulled is None else NOW - timedelta(days=pulled))]
    row, _ = price_repository(_inventory(images), price_per_gb_month=0.1, unused_days=90, owner_tag="owner", now=NOW)
    assert row.unused is unused


def test_an_empty_repository_is_judged_by_its_creation_date():
    old, _ = price_repository(_inventory([], created_days_ago=100), price_per_gb_month=0.1, unused_days=90,
                              owner_tag="owner", now=NOW)
    new, _ = price_repository(_inventory([], created_days_ago=3), price_per_gb_month=0.1, unused_days=90,
                              owner_tag="owner", now=NOW)
    assert old.unused and not new.unused and old.stored_bytes == 0


def test_owner_tag_key_matches_without_case_and_problems_are_reported():
    row, problems = price_repository(_inventory([], tags={"Owner": "U012AB3CD bob"}), price_per_gb_month=0.1,
                                     unused_days=90, owner_tag="owner", now=NOW)
    assert row.owners == ("U012AB3CD",)
    assert problems == ["owner tag 'owner': 'bob' is neither a Slack user ID (U…/W…) nor an email address"]
