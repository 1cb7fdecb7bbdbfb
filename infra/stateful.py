"""What a CloudFormation change set would do to mailroom's state, and whether it may run.

Pure: reads ``describe_change_set`` answers, names the stateful resources a change would
replace or remove, and words the table and the refusal. ``infra/changeset.py`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml


@dataclass(frozen=True)
class Holding:
    """What a resource type holds, and how to keep it through a replacement or removal."""

    holds: str
    migrate: str


STATEFUL: dict[str, Holding] = {
    "AWS::SQS::Queue": Holding(
        "its messages: mail waiting for its function, or dead letters waiting for a redrive",
        "drain it first: a source queue empties as its function runs (`mailroom --stage "
        "{stage} dlq status` shows every depth); a dead-letter queue is emptied with `mailroom "
        "--stage {stage} dlq redrive` (or `dlq discard`, audited). What a retained old queue "
        "still holds afterwards moves to the new one with `aws sqs start-message-move-task` "
        "(dead-letter queues) or by receiving and re-sending it",
    ),
    "AWS::DynamoDB::Table": Holding(
        "its items: idempotency records, the suppression list, the delivery log, audit "
        "records, routing rules",
        "export it first (`aws dynamodb export-table-to-point-in-time --export-format "
        "DYNAMODB_JSON`) and give the new table `ImportSourceSpecification` naming that "
        "export, or restore it from point-in-time recovery (README, Deployment)",
    ),
    "AWS::DynamoDB::GlobalTable": Holding(
        "its items in every replica",
        "export it first (`aws dynamodb export-table-to-point-in-time`) and import the export "
        "into the new table",
    ),
    "AWS::S3::Bucket": Holding(
        "its objects: SES mail under raw/ (the only copy until delivered), claim-checked "
        "payloads, quarantined and rejected payloads, Postmark events",
        "copy the objects first (`aws s3 sync s3://<old> s3://<new>`) and point the stage "
        "at the new bucket only once nothing under raw/ or payloads/ is still queued",
    ),
    "AWS::Logs::LogGroup": Holding(
        "its log events: one line per outcome, the trail `mailroom trace` follows",
        "export what must be kept first (`aws logs create-export-task` to S3)",
    ),
    "AWS::KMS::Key": Holding(
        "its key material: what it encrypted cannot be read once the key is deleted",
        "re-encrypt everything under the new key before the old one is scheduled for deletion",
    ),
    "AWS::SecretsManager::Secret": Holding(
        "its secret value",
        "copy the value into the new secret before the old one goes",
    ),
    "AWS::Kinesis::Stream": Holding(
        "its unread records",
        "let every consumer catch up first",
    ),
    "AWS::RDS::DBInstance": Holding("its database", "snapshot it first and restore"),
    "AWS::RDS::DBCluster": Holding("its database", "snapshot it first and restore"),
    "AWS::EFS::FileSystem": Holding("its files", "back it up first (AWS Backup) and restore"),
}

# CloudFormation's answer for a Modify: True, False or Conditional ("depends on a value known
# only while updating"). moto gives none; unknown is treated as a possible replacement.
NO_REPLACEMENT = "False"
RETAINING = {"Retain", "Snapshot", "ReplaceAndRetain", "ReplaceAndSnapshot"}


@dataclass(frozen=True)
class Change:
    """One resource change of a change set, as ``describe_change_set`` reports it."""

    action: str
    logical_id: str
    resource_type: str
    physical_id: str | None = None
    replacement: str | None = None
    policy_action: str | None = None
    causes: tuple[str, ...] = ()

    @property
    def stateful(self) -> bool:
        return self.resource_type in STATEFUL

    @property
    def replaces(self) -> bool:
        """A Modify that replaces, may replace (Conditional), or does not say."""
        return self.action in {"Modify", "Dynamic"} and self.replacement != NO_REPLACEMENT

    @property
    def endangers_state(self) -> bool:
        return self.stateful and (self.action == "Remove" or self.replaces)

    @property
    def retained(self) -> bool:
        """The old resource survives (retain or snapshot policy), detached from the stack."""
        return self.policy_action in RETAINING


def changes_from(answers: Iterable[Mapping[str, Any]]) -> list[Change]:
    """Every resource change in the pages of a ``describe_change_set`` answer."""
    found = []
    for answer in answers:
        for change in answer.get("Changes", []):
            if change.get("Type", "Resource") != "Resource":
                continue
            resource = change["ResourceChange"]
            causes = tuple(
                _cause(detail["Target"])
                for detail in resource.get("Details", [])
                if detail.get("Target", {}).get("RequiresRecreation", "Never") != "Never"
            )
            found.append(
                Change(
                    action=resource["Action"],
                    logical_id=resource["LogicalResourceId"],
                    resource_type=resource["ResourceType"],
                    physical_id=resource.get("PhysicalResourceId") or None,
                    replacement=resource.get("Replacement"),
                    policy_action=resource.get("PolicyAction"),
                    causes=tuple(dict.fromkeys(causes)),
                )
            )
    return found


def _cause(target: Mapping[str, Any]) -> str:
    name = target.get("Name") or target.get("Attribute", "?")
    return f"{name} ({target['RequiresRecreation']})"


def with_template_policies(
    changes: Iterable[Change],
    new_template: Mapping[str, Any],
    old_template: Mapping[str, Any],
) -> list[Change]:
    """Fill a missing ``PolicyAction`` from the templates' retain policies.

    A replaced resource follows the new template's ``UpdateReplacePolicy``; a removed one
    the ``DeletionPolicy`` it was deployed with.
    """
    filled = []
    for change in changes:
        if change.policy_action is None and change.endangers_state:
            if change.action == "Remove":
                spec = old_template.get("Resources", {}).get(change.logical_id, {})
                policy = spec.get("DeletionPolicy", "Delete")
            else:
                spec = new_template.get("Resources", {}).get(change.logical_id, {})
                policy = "ReplaceAnd" + spec.get("UpdateReplacePolicy", "Delete")
            change = replace(change, policy_action=policy)
        filled.append(change)
    return filled


@dataclass(frozen=True)
class Review:
    """The verdict on a change set: what endangers state, and what the operator allowed."""

    changes: tuple[Change, ...]
    refused: tuple[Change, ...]
    allowed: tuple[Change, ...]
    unknown_allowances: tuple[str, ...]

    @property
    def may_execute(self) -> bool:
        return not self.refused and not self.unknown_allowances


def review(changes: Iterable[Change], allow_replace: Iterable[str] = ()) -> Review:
    """Refuse every state-endangering change the operator did not name in ``allow_replace``."""
    changes = tuple(changes)
    names = set(allow_replace)
    endangering = [c for c in changes if c.endangers_state]
    return Review(
        changes=changes,
        refused=tuple(c for c in endangering if c.logical_id not in names),
        allowed=tuple(c for c in endangering if c.logical_id in names),
        # A name that matches nothing is likely a typo for something that still needs it.
        unknown_allowances=tuple(
            sorted(names - {c.logical_id for c in endangering}),
        ),
    )


def _replacement_column(change: Change) -> str:
    if change.action not in {"Modify", "Dynamic"}:
        return "-"
    shown = change.replacement or "unknown"
    return f"{shown} ({', '.join(change.causes)})" if change.causes else shown


def table(changes: Iterable[Change]) -> str:
    """Add, Modify and Remove with their replacement, one resource a line."""
    rows = [("ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT", "STATE")]
    for change in sorted(changes, key=lambda c: (_ORDER.get(c.action, 9), c.logical_id)):
        state = "-"
        if change.endangers_state:
            state = "AT RISK"
        elif change.stateful:
            state = "new" if change.action == "Add" else "kept"
        rows.append(
            (
                change.action,
                change.logical_id,
                change.resource_type,
                _replacement_column(change),
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


_ORDER = {"Add": 0, "Modify": 1, "Remove": 2}


def _what_happens(change: Change) -> str:
    if change.action == "Remove":
        verb = "removed from the stack"
    elif change.replacement == "True":
        verb = "replaced"
    elif change.replacement == "Conditional":
        verb = "possibly replaced (Replacement: Conditional)"
    else:
        verb = "possibly replaced (the change set does not say)"
    because = f", because {', '.join(change.causes)} changes" if change.causes else ""
    if change.retained and change.action == "Remove":
        fate = (
            "it is kept (retain policy) but leaves the stack: nothing in the stage uses it any "
            "more, and what it holds stays there until moved or deleted by hand"
        )
    elif change.retained:
        fate = (
            "the old one is kept (retain policy) but detached: the stage moves to a new, empty "
            "one and what the old one holds is left behind"
        )
    else:
        fate = "CloudFormation deletes it with everything it holds"
    return f"{verb}{because}; {fate}"


def refusal(result: Review, stage: str, holdings: Mapping[str, str] | None = None) -> str:
    """The lines that say what would be lost, how to keep it, and how to go ahead anyway."""
    holdings = holdings or {}
    count = len(result.refused)
    lines = []
    if count:
        lines.append(
            f"refused: this change set would replace or remove {count} stateful "
            f"resource{'s' if count != 1 else ''}; nothing was executed"
        )
    for change in result.refused:
        holding = STATEFUL[change.resource_type]
        name = f" {change.physical_id}" if change.physical_id else ""
        what = _what_happens(change)
        lines.append(f"- {change.logical_id} ({change.resource_type}{name}): {what}")
        lines.append(f"  at stake: {holding.holds}")
        if change.logical_id in holdings:
            lines.append(f"  now: {holdings[change.logical_id]}")
        lines.append(f"  to keep it: {holding.migrate.format(stage=stage)}")
    if result.refused:
        flags = " ".join(f"--allow-replace {c.logical_id}" for c in result.refused)
        lines.append(f"to go ahead once it is safe: {flags}")
    for name in result.unknown_allowances:
        lines.append(
            f"refused: --allow-replace {name} names no stateful resource this change set "
            "replaces or removes; nothing was executed"
        )
    return "\n".join(lines)


class _AnyTagLoader(yaml.SafeLoader):
    """Reads a CloudFormation template's short tags (``!Ref``, ``!Sub``…) as plain data."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_AnyTagLoader.add_multi_constructor("!", _any_tag)


def parse_template(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """A template as data, from YAML or JSON text (or the dict boto3 gives for JSON)."""
    if isinstance(body, Mapping):
        return dict(body)
    return dict(yaml.load(body, Loader=_AnyTagLoader) or {})  # noqa: S506 - SafeLoader subclass
