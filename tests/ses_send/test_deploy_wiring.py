"""``make deploy`` points the sending identity's notifications at the feedback topic."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from infra.ses_feedback import wire_from_outputs
from tests.conftest import REGION


def test_the_sending_identity_notifies_the_feedback_topic_with_headers() -> None:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        ses = session.client("ses")
        headers: list[str] = []

        def answer(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
            # moto 5.2.5 lacks SetIdentityHeadersInNotificationsEnabled: answer as SES does.
            headers.append(params["body"]["NotificationType"])
            return AWSResponse("https://ses", 200, {}, None), {}

        topics: list[tuple[str, str, str]] = []

        def seen(params: dict[str, Any], **_: Any) -> None:
            body = params["body"]
            topics.append((body["Identity"], body["NotificationType"], body["SnsTopic"]))

        ses.meta.events.register("before-call.ses.SetIdentityHeadersInNotificationsEnabled", answer)
        # moto takes this call but does not report a domain identity's topics back.
        ses.meta.events.register("before-call.ses.SetIdentityNotificationTopic", seen)
        session.client = lambda service: (
            ses if service == "ses" else boto3.client(service, region_name=REGION)
        )
        ses.verify_domain_identity(Domain="example.com")
        topic = session.client("sns").create_topic(Name="mailroom-dev-ses-feedback")["TopicArn"]

        line = wire_from_outputs(
            session, {"SesSendingIdentity": "example.com", "SesFeedbackTopicArn": topic}
        )

        assert topics == [
            ("example.com", kind, topic) for kind in ("Bounce", "Complaint", "Delivery")
        ]
        assert headers == ["Bounce", "Complaint", "Delivery"]
        assert line is not None
        assert "example.com" in line


def test_no_identity_no_wiring() -> None:
    assert wire_from_outputs(None, {"SesFeedbackTopicArn": "arn"}) is None
