"""bronze: commit staged chunks to the Iceberg bronze tables (group commit), emit dev.ateda.bronze.committed."""

from __future__ import annotations

import functools
import time

import functions_framework
from cloudevents.http import CloudEvent

from ateda.config import settings
from ateda.serving.metrics import instruments
from ateda.serving.request import emitter, request_scope
from ateda.steps.bronze import Chunk, GroupCommitter


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Trigger: dev.ateda.alerts.staged. Answers only once the chunk is committed; duplicates are success, and so
    is a chunk refused as bad input (quarantined as ``schema_conflict``, the rest of its batch committed)."""
    with request_scope("bronze", event["type"]):
        chunk = Chunk.from_event(event.data)
        result = _committer().submit(chunk)
        if result.rejected is not None:  # bad input (quarantined, counted by the committer): acknowledged
            return
        if result.duplicate:
            instruments().duplicates.labels("bronze").inc()
            return
        for survey in sorted(chunk.surveys):  # one, as split stages them
            instruments().alerts.labels("bronze", survey).inc(chunk.alerts)
        if chunk.arrived_at:
            instruments().lag.observe(max(0.0, time.time() - chunk.arrived_at))
        if result.chunks and result.chunks[0] == chunk.chunk:  # one event per batch, sent by its first chunk
            emit = emitter("bronze")
            # per survey of the batch (the `survey` attribute, for Triggers that want one survey); a batch without
            # alerts (only rejected parts) still says it committed, survey-less
            for survey in result.surveys or [None]:
                emit("dev.ateda.bronze.committed", _committed(result), str(result.snapshot_ids["alert"]), survey=survey)


@functools.cache
def _committer() -> GroupCommitter:
    return GroupCommitter(settings())


def _committed(result) -> dict:  # noqa: ANN001
    return {"snapshot_ids": result.snapshot_ids, "rows": result.rows, "nights": result.nights,
            "chunks": result.chunks, "alerts": result.batch_alerts}
