"""SES v1 ``SendBounce`` for mail SES received: paced to 1 call/s, failures mapped to our errors.

SES allows SendBounce only within 24 h of receipt and at most once per second per account;
the bouncer's event source is capped (reserved concurrency 1) and this client waits out the
rest of the second between calls in a container. ``MAILROOM_SES_ENDPOINT_URL`` points it at
the local SES stand-in (moto has no SendBounce).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.platform.errors import (
    ProviderError,
    ProviderPermanentError,
    transient_factory,
)
from chalicelib.platform.settings import Settings

PROVIDER = "ses"
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException"}


_transient = transient_factory(PROVIDER)


def ses_client(settings: Settings, service: str) -> Any:
    """The stage's ``ses`` (v1) or ``sesv2`` client, making one attempt per call.

    botocore would resend a call whose answer timed out, and neither SendBounce nor SendEmail
    takes an idempotency key: retries are the queue's, after the idempotency record says
    whether an earlier attempt may have acted.
    """
    from botocore.config import Config

    from chalicelib.platform.aws import aws_session

    config = Config(
        connect_timeout=3,
        read_timeout=settings.http_timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return aws_session().client(
        service,
        region_name=settings.region,
        endpoint_url=settings.ses_endpoint_url or settings.aws_endpoint_url,
        config=config,
    )


class Pacer:
    """Spaces one client's calls within a container: each at least an interval after the last."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._last_call: float | None = None

    def wait(self, interval: float) -> None:
        """Sleep out what is left of ``interval`` since the last call; this call is the last."""
        now = self._clock()
        if self._last_call is not None and now - self._last_call < interval:
            self._sleep(interval - (now - self._last_call))
        self._last_call = self._clock()


@dataclass(frozen=True)
class Bounce:
    """One per-recipient DSN for one received message."""

    original_message_id: str
    recipient: str
    status: str
    diagnostic: str
    arrival: datetime


class SesBouncer:
    """``send_bounce`` over an injected boto3 SES client, at most one call per interval."""

    def __init__(
        self,
        client: Any,
        *,
        sender: str,
        sender_arn: str | None = None,
        reporting_mta: str = "dns; inbound-smtp.amazonaws.com",
        interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._sender = sender
        self._sender_arn = sender_arn
        self._reporting_mta = reporting_mta
        self._interval = interval_seconds
        self._pacer = Pacer(clock, sleep)

    @classmethod
    def for_settings(cls, settings: Settings) -> SesBouncer:
        return cls(
            ses_client(settings, "ses"),
            sender=settings.bounce_sender,
            sender_arn=settings.bounce_sender_arn,
            reporting_mta=f"dns; inbound-smtp.{settings.region}.amazonaws.com",
            interval_seconds=settings.bounce_interval_ms / 1000,
        )

    def send(self, bounce: Bounce) -> str:
        """SendBounce; the SES message id of the bounce."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        self._pacer.wait(self._interval)  # SES: 1 SendBounce/s
        params: dict[str, Any] = {
            "OriginalMessageId": bounce.original_message_id,
            "BounceSender": self._sender,
            "MessageDsn": {"ReportingMta": self._reporting_mta, "ArrivalDate": bounce.arrival},
            "BouncedRecipientInfoList": [
                {
                    "Recipient": bounce.recipient,
                    "RecipientDsnFields": {
                        "Action": "failed",
                        "Status": bounce.status,
                        "DiagnosticCode": f"smtp; 550 {bounce.status} {bounce.diagnostic}",
                    },
                }
            ],
        }
        if self._sender_arn:
            params["BounceSenderArn"] = self._sender_arn
        try:
            return str(self._client.send_bounce(**params)["MessageId"])
        except ClientError as err:
            raise _classify(err) from err
        except (EndpointConnectionError, ConnectTimeoutError) as err:
            raise _transient("SES unreachable", acted=False) from err
        except ReadTimeoutError as err:
            raise _transient("SES did not answer in time", acted=True) from err
        except ConnectionClosedError as err:  # dropped after the request left
            raise _transient("SES closed the connection", acted=True) from err


def _classify(err: Any) -> ProviderError:
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    context: dict[str, Any] = {"status_code": status or None, "error_code": code or None}
    if code in _THROTTLED or status == 429:
        return _transient("SES throttled SendBounce", acted=False, **context)
    if status >= 500:
        return _transient("SES failed", acted=status != 503, **context)
    return ProviderPermanentError(
        f"SES refused the bounce: {error.get('Message', code)}"[:200], provider=PROVIDER, **context
    )
