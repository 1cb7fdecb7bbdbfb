"""Deploy step: point the sending identity's notifications (Bounce, Complaint, Delivery, with
original headers) at the stage's SES feedback topic. CloudFormation has no resource for
them (SES v1 ``SetIdentityNotificationTopic``); configuration-set events need nothing here.
"""

from __future__ import annotations

from typing import Any

NOTIFICATION_TYPES = ("Bounce", "Complaint", "Delivery")


def wire_identity_notifications(ses: Any, identity: str, topic_arn: str) -> list[str]:
    """Set each notification topic of ``identity`` (idempotent); the types wired."""
    for kind in NOTIFICATION_TYPES:
        ses.set_identity_notification_topic(
            Identity=identity, NotificationType=kind, SnsTopic=topic_arn
        )
        ses.set_identity_headers_in_notifications_enabled(
            Identity=identity, NotificationType=kind, Enabled=True
        )
    return list(NOTIFICATION_TYPES)


def wire_from_outputs(session: Any, outputs: dict[str, str]) -> str | None:
    """Wire the identity the stack names (parameter ``SesSendingIdentity``); a line to print."""
    identity = outputs.get("SesSendingIdentity", "")
    topic = outputs.get("SesFeedbackTopicArn", "")
    if not identity or not topic:
        return None
    kinds = wire_identity_notifications(session.client("ses"), identity, topic)
    return f"SES identity {identity}: {', '.join(kinds)} notifications to {topic}"
