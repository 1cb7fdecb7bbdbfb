"""The one service container of every handler: settings, stores, the HTTP session and the
provider clients a handler keeps between invocations, each built on first use.

``services()`` builds it once per Lambda container (again only when the settings are
reloaded, as tests and the local stack do). A property imports its module when first read,
so a function pays at cold start only for what its handler uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.platform.aws import aws_client
from chalicelib.platform.batch import RecordHandler, process_batch
from chalicelib.platform.logging import get_logger
from chalicelib.platform.settings import Settings, per_container

if TYPE_CHECKING:
    import requests

    from chalicelib.mail.audit import AuditLog
    from chalicelib.mail.delivery_log import DeliveryLog
    from chalicelib.mail.failover import ProviderSwitch
    from chalicelib.mail.routing import DynamoRouteStore
    from chalicelib.mail.suppression import SuppressionList
    from chalicelib.mail.trace_index import TraceIndex
    from chalicelib.platform.idempotency import IdempotencyStore
    from chalicelib.providers.gmail.client import GmailMailboxes
    from chalicelib.providers.ses.client import SesBouncer
    from chalicelib.providers.ses.sender import SesSender


class Services:
    """What handlers share within one container."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        get_logger(settings.log_level)

    @cached_property
    def dynamodb(self) -> Any:
        return aws_client("dynamodb")

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        from chalicelib.platform.idempotency import IdempotencyStore

        return IdempotencyStore.for_settings(self.settings, self.dynamodb)

    @cached_property
    def audit(self) -> AuditLog:
        from chalicelib.mail.audit import AuditLog

        return AuditLog.for_settings(self.settings, self.dynamodb)

    @cached_property
    def routes(self) -> DynamoRouteStore:
        from chalicelib.mail.routing import DynamoRouteStore

        return DynamoRouteStore(
            self.settings.routes_table,
            cache_seconds=self.settings.routes_cache_seconds,
            client=self.dynamodb,
        )

    @cached_property
    def index(self) -> TraceIndex:
        from chalicelib.mail.trace_index import TraceIndex

        return TraceIndex.for_settings(self.settings, self.dynamodb)

    @cached_property
    def suppressions(self) -> SuppressionList:
        """The one list; on a stage that sends through SES, SES's account-level list follows."""
        from chalicelib.mail.suppression import SuppressionList

        mirror = None
        if self.settings.sends_through_ses:
            from chalicelib.providers.ses.suppression import SesSuppressionList

            mirror = SesSuppressionList(self.sesv2)
        return SuppressionList(self.settings.state_table, client=self.dynamodb, mirror=mirror)

    @cached_property
    def delivery_log(self) -> DeliveryLog:
        from chalicelib.mail.delivery_log import DeliveryLog

        return DeliveryLog.for_settings(self.settings, self.dynamodb)

    @cached_property
    def session(self) -> requests.Session:
        import requests

        return requests.Session()

    @cached_property
    def gmail(self) -> GmailMailboxes:
        from chalicelib.providers.gmail.client import GmailMailboxes

        return GmailMailboxes(self.settings, session=self.session)

    @cached_property
    def ses_bouncer(self) -> SesBouncer:
        from chalicelib.providers.ses.client import SesBouncer

        return SesBouncer.for_settings(self.settings)

    @cached_property
    def switch(self) -> ProviderSwitch:
        from chalicelib.mail.failover import ProviderSwitch

        return ProviderSwitch(self.settings.state_table, client=self.dynamodb)

    @cached_property
    def sesv2(self) -> Any:
        from chalicelib.providers.ses.client import ses_client

        return ses_client(self.settings, "sesv2")

    @cached_property
    def ses_sender(self) -> SesSender:
        """SESv2 for outbound mail; one per container, since it paces this container's calls."""
        from chalicelib.providers.ses.sender import SesSender

        return SesSender(self.sesv2, configuration_set=self.settings.ses_configuration_set)


services = per_container(Services)


class QueueHandler(Protocol):
    """A queue function's Lambda entry point: the event and Lambda's remaining-time callable."""

    def __call__(
        self, event: Mapping[str, Any], remaining_time_ms: Callable[[], int] | None = None
    ) -> dict[str, Any]: ...


def queue_handler(handle_record: RecordHandler, *, event_type: str, queue: str) -> QueueHandler:
    """The Lambda entry point of ``queue``, whose records ``handle_record`` handles one by one.

    The container's services are built before the first record, so a bad setting fails the
    whole invocation instead of each record in turn.
    """

    def handle_batch(
        event: Mapping[str, Any], remaining_time_ms: Callable[[], int] | None = None
    ) -> dict[str, Any]:
        services()
        return process_batch(
            event, handle_record, event_type=event_type, remaining_time_ms=remaining_time_ms
        )

    handle_batch.__doc__ = f"Lambda entry point for the ``{queue}`` queue."
    return handle_batch
