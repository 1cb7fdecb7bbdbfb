"""Provisions the template's observability block in moto, and says what it skips.

Called by ``provision.provision`` for every resource before its own ``_create``: resources
with a false ``Condition`` are skipped, alarms, the dashboard, log groups and metric filters
are created with the calls CloudFormation makes, and saved Logs Insights queries are skipped
(moto has no ``PutQueryDefinition``), with one line on stderr saying so.
"""

from __future__ import annotations

import re
import sys
from typing import Any

KINDS = frozenset(
    {
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Logs::LogGroup",
        "AWS::Logs::MetricFilter",
        "AWS::Logs::QueryDefinition",
    }
)
SKIPPED_KINDS = {"AWS::Logs::QueryDefinition": "moto has no Logs PutQueryDefinition"}
_ALARM_KEYS = (
    "AlarmName",
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "ExtendedStatistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
)
_NUMBERS = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int, "Threshold": float}


def provision(build: Any, doc: dict[str, Any], logical: str, spec: dict[str, Any]) -> bool:
    """Handle ``logical`` if it is ours to handle (or conditioned out); True when handled."""
    condition = spec.get("Condition")
    if condition is not None and not _condition(build, doc, condition):
        return True
    kind = spec["Type"]
    if kind not in KINDS:
        return False
    if kind in SKIPPED_KINDS:
        print(f"local stack: skipped {kind} {logical} ({SKIPPED_KINDS[kind]})", file=sys.stderr)
        return True
    props = _resolve(build, doc, spec["Properties"])
    clients = build.clients
    if kind == "AWS::Logs::LogGroup":
        logs = clients("logs")
        name = props["LogGroupName"]
        if not logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups"):
            logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(
                logGroupName=name, retentionInDays=int(props["RetentionInDays"])
            )
        build.physical[logical] = name
    elif kind == "AWS::Logs::MetricFilter":
        logs = clients("logs")
        if not logs.describe_log_groups(logGroupNamePrefix=props["LogGroupName"]).get("logGroups"):
            logs.create_log_group(logGroupName=props["LogGroupName"])
        transformations = [
            {
                "metricName": t["MetricName"],
                "metricNamespace": t["MetricNamespace"],
                "metricValue": str(t["MetricValue"]),
                **({"defaultValue": float(t["DefaultValue"])} if "DefaultValue" in t else {}),
            }
            for t in props["MetricTransformations"]
        ]
        logs.put_metric_filter(
            logGroupName=props["LogGroupName"],
            filterName=logical,
            filterPattern=props["FilterPattern"],
            metricTransformations=transformations,
        )
    elif kind == "AWS::CloudWatch::Alarm":
        params = {k: props[k] for k in _ALARM_KEYS if k in props}
        for key, cast in _NUMBERS.items():
            if key in params:
                params[key] = cast(params[key])
        clients("cloudwatch").put_metric_alarm(**params)
        build.physical[logical] = props["AlarmName"]
    elif kind == "AWS::CloudWatch::Dashboard":
        clients("cloudwatch").put_dashboard(
            DashboardName=props["DashboardName"], DashboardBody=props["DashboardBody"]
        )
        build.physical[logical] = props["DashboardName"]
    return True


def _region(build: Any) -> str:
    return str(build.clients("cloudwatch").meta.region_name)


def _condition(build: Any, doc: dict[str, Any], name: str) -> bool:
    return bool(_resolve(build, doc, doc.get("Conditions", {})[name]))


def _resolve(build: Any, doc: dict[str, Any], value: Any) -> Any:
    """Intrinsics of the observability block: the builder's, plus conditions and the region."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Fn::If":
            chosen = arg[1] if _condition(build, doc, arg[0]) else arg[2]
            return _resolve(build, doc, chosen)
        if name == "Fn::Equals":
            left, right = (_resolve(build, doc, a) for a in arg)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not _resolve(build, doc, arg[0])
        if name == "Condition":
            return _condition(build, doc, arg)
        if name == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(_pseudo(build, m[1])), arg)
        if name == "Ref":
            return _pseudo(build, arg)
    if isinstance(value, dict):
        return {k: _resolve(build, doc, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(build, doc, v) for v in value]
    return value


def _pseudo(build: Any, name: str) -> Any:
    if name == "AWS::Region":
        return _region(build)
    if name in build.parameters:  # the builder treats an empty parameter as missing
        return build.parameters[name]
    return build.resolve({"Ref": name})
