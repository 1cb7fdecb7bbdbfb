"""The SQS record body as SNS delivers it: an SNS envelope, or the raw message."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from chalicelib.platform.errors import PoisonMessageError
from chalicelib.platform.payload import Model


class SnsEnvelope(Model):
    """The JSON SNS wraps a message in when raw message delivery is off."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str = Field(alias="Type")
    message_id: str = Field(alias="MessageId")
    topic_arn: str = Field(alias="TopicArn")
    message: str = Field(alias="Message")
    timestamp: str = Field(alias="Timestamp")
    message_attributes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, alias="MessageAttributes"
    )


def unwrap(body: str) -> tuple[str, dict[str, str]]:
    """The published message and its string attributes, from either delivery mode.

    With raw delivery on, SNS puts the published message itself in the SQS body (and the
    attributes on the SQS record); with it off, the body is an SNS ``Notification``.
    """
    try:
        decoded = json.loads(body)
    except ValueError as err:
        raise PoisonMessageError("record body is not JSON") from err
    if isinstance(decoded, dict) and decoded.get("Type") == "Notification" and "Message" in decoded:
        try:
            envelope = SnsEnvelope.model_validate(decoded)
        except ValidationError as err:
            raise PoisonMessageError("malformed SNS envelope") from err
        attributes = {
            name: str(value.get("Value", "")) for name, value in envelope.message_attributes.items()
        }
        return envelope.message, attributes
    return body, {}
