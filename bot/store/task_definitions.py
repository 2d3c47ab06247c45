"""ECS task definitions' container images (``task_definitions``): immutable per revision ARN, read once, ever."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from .database import CHUNK, Tables, to_iso


class TaskDefinitions(Tables):
    def task_definition_images(self, arns: Iterable[str]) -> dict[str, list[str]]:
        arns = list(arns)
        found: dict[str, list[str]] = {}
        for start in range(0, len(arns), CHUNK):
            chunk = arns[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select arn, images from task_definitions where arn in ({marks})", chunk):
                found[row["arn"]] = json.loads(row["images"])
        return found

    def put_task_definition_images(self, images: dict[str, list[str]]) -> None:
        now = to_iso(datetime.now(UTC))
        with self.db.conn:
            self.db.table("task_definitions").insert_all(
                [{"arn": arn, "images": json.dumps(uris), "fetched_at": now} for arn, uris in images.items()],
                ignore=True)
