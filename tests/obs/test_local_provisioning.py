"""The local stack provisions the observability block as far as moto goes, and says the rest."""

from __future__ import annotations

import boto3
import pytest

from mailroom_local.provision import load_template
from tests.conftest import REGION, STAGE, Stage

pytestmark = pytest.mark.observed


def test_alarms_dashboard_and_access_filters_exist_in_the_embedded_aws(aws: Stage) -> None:
    resources = load_template()["Resources"].values()
    expected = [
        r for r in resources if r["Type"] == "AWS::CloudWatch::Alarm" and "Condition" not in r
    ]
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    alarms = cloudwatch.describe_alarms(MaxRecords=100)["MetricAlarms"]

    assert len(alarms) == len(expected)
    for alarm in alarms:
        # Escalations (a dead letter 12 hours old) page on their own, higher-severity topic.
        escalation = alarm["AlarmName"].endswith("-age-12h")
        topic = aws.topics["alarms-critical" if escalation else "alarms"]
        assert alarm["AlarmActions"] == [topic], alarm["AlarmName"]
    assert any(a["AlarmName"].endswith("-age-12h") for a in alarms)
    assert not any(a["AlarmName"].endswith("-failed") for a in alarms)
    assert cloudwatch.get_dashboard(DashboardName=f"mailroom-{STAGE}")["DashboardBody"]
    filters = boto3.client("logs", region_name=REGION).describe_metric_filters()["metricFilters"]
    assert {f["metricTransformations"][0]["metricName"] for f in filters} == {
        "AccessDenied",
        "SesSendingPaused",
        "OutboundFailoverActive",
    }


def test_the_local_stack_says_it_skips_saved_queries(
    aws: Stage, capfd: pytest.CaptureFixture[str]
) -> None:
    from mailroom_local import observability

    spec = next(
        r
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::Logs::QueryDefinition"
    )

    assert observability.provision(None, {}, "SomeQuery", spec) is True
    assert "skipped AWS::Logs::QueryDefinition SomeQuery" in capfd.readouterr().err
