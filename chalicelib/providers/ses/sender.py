"""SESv2 ``SendEmail`` for outbound mail: raw MIME we build, paced to the account's rate.

Classification mirrors Postmark's: throttling and 5xx are transient; a timeout or a dropped
answer may have sent (uncertain, proven by SES events before anything else happens);
``MessageRejected``, an unverified identity, paused sending and the daily quota are named
permanent outcomes for a person. botocore's own retries are off for this client: a retried
``SendEmail`` after a lost answer is exactly the double send the idempotency protocol avoids.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from typing import Any

from chalicelib.mail.outbound import OutboundEmail
from chalicelib.mail.outbound_mime import build_mime
from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderPermanentError,
    ProviderTransientError,
)
from chalicelib.providers.ses.client import Pacer

PROVIDER = "ses"
CORRELATION_TAG = "correlation_id"
# SES message tags take ASCII letters, digits, "_" and "-" only; other ids go hex-encoded.
CORRELATION_HEX_TAG = "correlation_hex"
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException"}
# Used until GetAccount answers (and if it never does): SES's sandbox rate.
DEFAULT_SEND_RATE = 1.0


class SesSendingPaused(ProviderPermanentError):
    """SES refuses to send for the account or configuration set (paused or suspended)."""


class SesIdentityNotVerified(ProviderAuthError):
    """The From address, its domain or the MAIL FROM domain is not verified in SES."""


class SesDailyQuotaExceeded(ProviderPermanentError):
    """The account's 24-hour sending quota is used up; redrive once it has room again."""


class SesMessageRejected(ProviderPermanentError):
    """SES refused this message (content, a virus, a sandbox recipient)."""


def correlation_tags(correlation_id: str) -> list[dict[str, str]]:
    """The message tag that carries ``correlation_id`` into every SES event."""
    if _TAG_VALUE.match(correlation_id):
        return [{"Name": CORRELATION_TAG, "Value": correlation_id}]
    return [{"Name": CORRELATION_HEX_TAG, "Value": correlation_id.encode().hex()}]


def correlation_from_tags(tags: dict[str, list[str]]) -> str | None:
    """The correlation id in an event's ``mail.tags``, if ours."""
    if tags.get(CORRELATION_TAG):
        return tags[CORRELATION_TAG][0]
    if tags.get(CORRELATION_HEX_TAG):
        try:
            return bytes.fromhex(tags[CORRELATION_HEX_TAG][0]).decode()
        except ValueError:
            return None
    return None


def _tag_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256]


def classify(code: str, message: str, status: int) -> ProviderError:
    """The error for an SES error answer (``code`` as in the API's error shape)."""
    context: dict[str, Any] = {"status_code": status or None, "error_code": code or None}
    text = f"{code}: {message}"[:200]
    lowered = message.lower()
    if "daily message quota" in lowered or "daily sending quota" in lowered:
        return SesDailyQuotaExceeded(text, provider=PROVIDER, **context)
    if code in _THROTTLED or status == 429:
        return ProviderTransientError(text, provider=PROVIDER, **context)
    if code in {"SendingPausedException", "AccountSuspendedException"}:
        return SesSendingPaused(text, provider=PROVIDER, **context)
    if code == "MailFromDomainNotVerifiedException" or (
        code == "MessageRejected" and "not verified" in lowered
    ):
        return SesIdentityNotVerified(text, provider=PROVIDER, **context)
    if code == "MessageRejected":
        return SesMessageRejected(text, provider=PROVIDER, **context)
    if status >= 500:
        # 503 answers before SES takes the message; any other 5xx may come after it did.
        return ProviderTransientError(
            text, provider=PROVIDER, may_have_acted=status != 503, **context
        )
    return ProviderPermanentError(text, provider=PROVIDER, **context)


class SesSender:
    """``send`` over an injected boto3 ``sesv2`` client, at most ``rate`` calls a second."""

    provider = PROVIDER

    def __init__(
        self,
        client: Any,
        *,
        configuration_set: str | None,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._configuration_set = configuration_set
        self._rate = rate
        self._pacer = Pacer(clock, sleep)

    def send_rate(self) -> float:
        """The account's ``MaxSendRate``, read once per container (``GetAccount``)."""
        if self._rate is None:
            try:
                quota = self._client.get_account().get("SendQuota") or {}
                self._rate = float(quota.get("MaxSendRate") or DEFAULT_SEND_RATE)
            except Exception:
                return DEFAULT_SEND_RATE
        return max(self._rate, 0.1)

    def probe(self) -> None:
        """Raise unless SES answers and lets the account send (for the failover switch)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            account = self._client.get_account()
        except ClientError as err:
            raise _from_client_error(err) from err
        except BotoCoreError as err:
            raise ProviderTransientError("SES unreachable", provider=PROVIDER) from err
        if account.get("SendingEnabled") is False:
            raise SesSendingPaused("sending is disabled for the account", provider=PROVIDER)

    def send(self, email: OutboundEmail, blocked: Collection[str] = ()) -> str:
        """SendEmail (raw); the SES message id. Raises our errors on any failure."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        raw = build_mime(email, blocked)
        tags = correlation_tags(email.correlation_id)
        tags.append({"Name": "message_stream", "Value": _tag_value(email.message_stream)})
        if email.tag:
            tags.append({"Name": "tag", "Value": _tag_value(email.tag)})
        params: dict[str, Any] = {
            "FromEmailAddress": email.from_,
            "Destination": {
                "ToAddresses": raw.to,
                "CcAddresses": raw.cc,
                "BccAddresses": raw.bcc,
            },
            "Content": {"Raw": {"Data": raw.data}},
            "EmailTags": tags,
        }
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        self._pacer.wait(1.0 / self.send_rate())
        try:
            return str(self._client.send_email(**params)["MessageId"])
        except ClientError as err:
            raise _from_client_error(err) from err
        except (EndpointConnectionError, ConnectTimeoutError) as err:
            raise ProviderTransientError("SES unreachable", provider=PROVIDER) from err
        except (ReadTimeoutError, ConnectionClosedError) as err:
            raise ProviderTransientError(
                "SES did not answer", provider=PROVIDER, may_have_acted=True
            ) from err
        except KeyError as err:
            raise ProviderTransientError(
                "accepted, but the answer is unreadable", provider=PROVIDER, may_have_acted=True
            ) from err


def _from_client_error(err: Any) -> ProviderError:
    error = err.response.get("Error", {})
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return classify(str(error.get("Code", "")), str(error.get("Message", "")), status)
