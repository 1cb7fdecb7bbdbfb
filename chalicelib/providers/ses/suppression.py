"""SES's account-level suppression list (SESv2), kept in step with ours: an address we
suppress is put there, one we reactivate is taken off. SES's list is a second guard: the
sender checks ours before any send through either provider.
"""

from __future__ import annotations

from typing import Any

# SES takes only these two reasons; a complaint is a complaint, everything else a bounce.
COMPLAINT = "COMPLAINT"
BOUNCE = "BOUNCE"


def ses_reason(reason: str) -> str:
    """SES's reason for one of ours (``complaint``, ``bounce:General``, ``inactive``...)."""
    return COMPLAINT if "complain" in reason.lower() or "spam" in reason.lower() else BOUNCE


class SesSuppressionList:
    """Put and delete addresses on the account-level list over an injected sesv2 client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put(self, address: str, *, reason: str) -> None:
        self._client.put_suppressed_destination(EmailAddress=address, Reason=ses_reason(reason))

    def delete(self, address: str) -> bool:
        """Take ``address`` off SES's list; False if it was not on it."""
        from botocore.exceptions import ClientError

        try:
            self._client.delete_suppressed_destination(EmailAddress=address)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "NotFoundException":
                return False
            raise
        return True
