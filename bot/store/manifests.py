"""What the registry's blobs say, immutable per digest and so read once, ever: image manifests (``manifests``) and
the Dockerfile step of each layer from an image's config blob (``config_steps``)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from ..core.models import Manifest
from .database import CHUNK, Tables, insert_or_ignore, to_iso


class Manifests(Tables):
    def get_manifests(self, digests: Iterable[str]) -> dict[str, Manifest]:
        digests = list(digests)
        found: dict[str, Manifest] = {}
        # one (digest, size) pair per blob, however many manifests list it: images share most of their layers, and
        # `size` holds a repository's manifests at once (10,000 images x 20 layers: 200,000 pairs, 30,000 distinct)
        pairs: dict[str, tuple[str, int]] = {}

        def pair(digest: str, size: int) -> tuple[str, int]:
            known = pairs.get(digest)
            if known is None or known[1] != size:
                known = pairs[digest] = (digest, size)
            return known

        for start in range(0, len(digests), CHUNK):
            chunk = digests[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            # plain tuples, not sqlite-utils' dict rows: `size` reads hundreds of thousands of blobs through here
            for digest, media_type, blobs, children, problem in self.db.execute(
                    f"select digest, media_type, blobs, children, problem from manifests where digest in ({marks})",
                    chunk):
                found[digest] = Manifest(digest, media_type, blobs=tuple(pair(*b) for b in json.loads(blobs)),
                                         children=tuple(json.loads(children)), problem=problem)
        return found

    def put_manifests(self, manifests: Iterable[Manifest]) -> None:
        now = to_iso(datetime.now(UTC))
        rows = [{"digest": m.digest, "media_type": m.media_type, "blobs": json.dumps(m.blobs),
                 "children": json.dumps(m.children), "problem": m.problem, "fetched_at": now} for m in manifests]
        if rows:  # written by the scan's workers, one repository at a time: no fsync each (a cache)
            with self.unsynced_transaction():
                insert_or_ignore(self.db, "manifests", rows)

    def get_config_steps(self, digests: Iterable[str]) -> dict[str, tuple[tuple[str | None, ...] | None, str | None]]:
        """Config digest -> (the Dockerfile step of each layer, or None; the problem that left it unknown)."""
        digests = list(digests)
        found: dict[str, tuple[tuple[str | None, ...] | None, str | None]] = {}
        for start in range(0, len(digests), CHUNK):
            chunk = digests[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select * from config_steps where digest in ({marks})", chunk):
                steps = None if row["steps"] is None else tuple(json.loads(row["steps"]))
                found[row["digest"]] = (steps, row["problem"])
        return found

    def put_config_steps(self, digest: str, steps: Sequence[str | None] | None, problem: str | None) -> None:
        with self.db.conn:
            self.db.table("config_steps").insert({"digest": digest,
                                            "steps": None if steps is None else json.dumps(list(steps)),
                                            "problem": problem, "fetched_at": to_iso(datetime.now(UTC))},
                                           ignore=True)

    def manifest_count(self) -> int:
        return self.db["manifests"].count
