"""``mailroom stop|resume``: disable or enable a pipeline's event source mappings.

Not reserved concurrency 0 (the old runbooks' kill switch): Lambda's pollers keep receiving
while the function is throttled, the batches return with raised receive counts and good
mail drifts into the DLQ. A disabled mapping stops receiving; the mail waits in the queue.
"""

from __future__ import annotations

from typing import Any

import click

from mailroom_cli.console import Finding, emit
from mailroom_cli.context import Context
from mailroom_cli.params import PIPELINE
from mailroom_cli.pipelines import Pipeline

STOPPED_STATES = {"Disabled", "Disabling"}


def mappings(ctx: Context, pipeline: Pipeline) -> list[dict[str, Any]]:
    """The event source mappings that feed ``pipeline``'s queue to its function."""
    arn = ctx.queue_arn(pipeline.queue_name(ctx.stage))
    client = ctx.client("lambda")
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"EventSourceArn": arn}
    while True:
        page = client.list_event_source_mappings(**kwargs)
        found.extend(m for m in page.get("EventSourceMappings", []) if m["EventSourceArn"] == arn)
        if not page.get("NextMarker"):
            return found
        kwargs["Marker"] = page["NextMarker"]


def is_stopped(ctx: Context, pipeline: Pipeline) -> bool:
    """True when every mapping of ``pipeline`` is disabled (and it has at least one)."""
    found = mappings(ctx, pipeline)
    return bool(found) and all(m.get("State") in STOPPED_STATES for m in found)


def _switch(ctx: Context, name: str, *, enabled: bool, reason: str) -> None:
    rows = []
    client = ctx.client("lambda")
    for pipeline in ctx.pipelines(name):
        found = mappings(ctx, pipeline)
        if not found:
            raise Finding(
                f"pipeline {pipeline.name!r} has no event source mapping on stage {ctx.stage!r}"
            )
        for mapping in found:
            client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
            state = client.get_event_source_mapping(UUID=mapping["UUID"])["State"]
            rows.append({"pipeline": pipeline.name, "mapping": mapping["UUID"], "state": state})
        ctx.record(
            "pipeline.resume" if enabled else "pipeline.stop",
            reason=reason,
            count=len(found),
            pipeline=pipeline.name,
        )
    emit(ctx.as_json, rows, columns=["pipeline", "mapping", "state"])
    wanted = {"Enabled", "Enabling"} if enabled else STOPPED_STATES
    if any(r["state"] not in wanted for r in rows):
        raise Finding("a mapping did not reach the requested state; run `mailroom health`")


@click.command()
@click.argument("pipeline", default="all", type=PIPELINE)
@click.option("--reason", required=True, help="Why (kept in the audit record).")
@click.pass_obj
def stop(ctx: Context, pipeline: str, reason: str) -> None:
    """Stop PIPELINE (or all): disable its event source mappings; mail waits in the queue."""
    _switch(ctx, pipeline, enabled=False, reason=reason)


@click.command()
@click.argument("pipeline", default="all", type=PIPELINE)
@click.option("--reason", default="resumed by operator", help="Why (kept in the audit record).")
@click.pass_obj
def resume(ctx: Context, pipeline: str, reason: str) -> None:
    """Resume PIPELINE (or all): enable its event source mappings again."""
    _switch(ctx, pipeline, enabled=True, reason=reason)
