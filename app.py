"""mailroom's Chalice wiring: routes and queue handlers call into chalicelib.handlers.

Handler modules are imported inside the function that needs them, so each Lambda function
pays at cold start only for its own pipeline (the webhook never imports the FreeScout
client, and nothing here imports googleapiclient).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chalice import Chalice, Response

if TYPE_CHECKING:  # the handlers' imports (pydantic, boto3) load only when a request needs them
    from chalicelib.handlers.http import HttpReply

STAGE = os.environ.get("MAILROOM_STAGE", "local")
app = Chalice(app_name="mailroom")

JSON_TYPES = ["application/json", "text/plain", "application/octet-stream"]


def _reply(reply: HttpReply) -> Response:
    return Response(
        body=reply.body,
        status_code=reply.status,
        headers={"Content-Type": "application/json", **reply.headers},
    )


def _remaining_ms(event: Any) -> Any:
    context = getattr(event, "context", None)
    return getattr(context, "get_remaining_time_in_millis", None)


def _raw_body() -> bytes:
    request = app.current_request
    return bytes(request.raw_body or b"") if request is not None else b""


def _headers() -> dict[str, str]:
    request = app.current_request
    return dict(request.headers) if request is not None else {}


@app.route("/webhooks/postmark/inbound", methods=["POST"], content_types=JSON_TYPES)
def postmark_inbound_webhook() -> Response:
    from chalicelib.handlers import webhooks

    return _reply(webhooks.postmark_inbound(_headers(), _raw_body()))


@app.route("/webhooks/postmark/events", methods=["POST"], content_types=JSON_TYPES)
def postmark_events_webhook() -> Response:
    from chalicelib.handlers import postmark_events

    return _reply(postmark_events.postmark_events(_headers(), _raw_body()))


@app.route("/v1/outbound", methods=["POST"], content_types=JSON_TYPES)
def outbound_submit() -> Response:
    from chalicelib.handlers import outbound_api

    return _reply(outbound_api.submit(_headers(), _raw_body()))


@app.on_sqs_message(queue=f"mailroom-{STAGE}-inbound-bridge.fifo", batch_size=10)
def inbound_bridge(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import inbound_bridge as bridge

    return bridge.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


@app.on_sqs_message(queue=f"mailroom-{STAGE}-outbound-sender.fifo", batch_size=10)
def outbound_sender(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import outbound_sender as sender

    return sender.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


@app.on_sqs_message(queue=f"mailroom-{STAGE}-ses-inbound", batch_size=10)
def ses_router(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import router

    return router.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


# One message per invocation: an email may be 40 MB, held as bytes while it uploads.
@app.on_sqs_message(queue=f"mailroom-{STAGE}-gmail-forwarder", batch_size=1)
def gmail_forwarder(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import gmail_forwarder as forwarder

    return forwarder.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


@app.on_sqs_message(queue=f"mailroom-{STAGE}-bouncer", batch_size=10)
def bouncer(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import bouncer as bounces

    return bounces.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


@app.on_sqs_message(queue=f"mailroom-{STAGE}-ses-feedback", batch_size=10)
def ses_feedback(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import ses_feedback as feedback

    return feedback.handle_batch(event.to_dict(), remaining_time_ms=_remaining_ms(event))


# --- Observability: the end-to-end probe; off unless MAILROOM_PROBE_ENABLED. ---
# The rate is read when Chalice imports app.py to deploy, like the queue names above.
PROBE_RATE_MINUTES = int(os.environ.get("MAILROOM_PROBE_RATE_MINUTES", "5"))
PROBE_RATE = f"rate({PROBE_RATE_MINUTES} minute{'s' if PROBE_RATE_MINUTES != 1 else ''})"


@app.schedule(PROBE_RATE, name="probe")
def probe(event: Any) -> dict[str, Any]:
    from chalicelib.handlers import probe as scheduled

    return scheduled.run()
