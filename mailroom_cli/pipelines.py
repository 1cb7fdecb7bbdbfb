"""The pipelines the CLI knows, as one table: a new pipeline is one line here.

Names follow ``infra/template.yaml`` (``mailroom-<stage>-<queue>``) and Chalice's function
names (``mailroom-<stage>-<handler>``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pipeline:
    """One queue-fed pipeline: its source queue, DLQ, topic and handler function."""

    name: str
    queue: str  # queue name without the ``mailroom-<stage>-`` prefix and ``.fifo``
    handler: str  # the Chalice function (app.py's on_sqs_message handler)
    fifo: bool = True
    topic: str | None = None  # the SNS topic feeding the queue (its subscription has a DLQ)
    key_prefix: str = ""  # idempotency key = prefix + business id ("outbound:"); "" = none

    def queue_name(self, stage: str) -> str:
        return f"mailroom-{stage}-{self.queue}{'.fifo' if self.fifo else ''}"

    def dlq_name(self, stage: str) -> str:
        return f"mailroom-{stage}-{self.queue}-dlq{'.fifo' if self.fifo else ''}"

    def sub_dlq_name(self, stage: str) -> str | None:
        if self.topic is None:
            return None
        return f"mailroom-{stage}-{self.topic}-sub-dlq{'.fifo' if self.fifo else ''}"

    def topic_name(self, stage: str) -> str | None:
        if self.topic is None:
            return None
        return f"mailroom-{stage}-{self.topic}{'.fifo' if self.fifo else ''}"

    def function_name(self, stage: str) -> str:
        return f"mailroom-{stage}-{self.handler}"


PIPELINES: tuple[Pipeline, ...] = (
    Pipeline("inbound", "inbound-bridge", "inbound_bridge", topic="inbound"),
    Pipeline(
        "outbound", "outbound-sender", "outbound_sender", topic="outbound", key_prefix="outbound:"
    ),
    # The SES pipelines key their side effects on (message, recipient, action), which one id
    # does not name: analyze and trace look their records up by the pipelines above only.
    Pipeline("ses-inbound", "ses-inbound", "ses_router", fifo=False, topic="ses-inbound"),
    Pipeline("gmail", "gmail-forwarder", "gmail_forwarder", fifo=False),
    Pipeline("bouncer", "bouncer", "bouncer", fifo=False),
    Pipeline("ses-feedback", "ses-feedback", "ses_feedback", fifo=False, topic="ses-feedback"),
)

BY_NAME = {p.name: p for p in PIPELINES}
