"""The outbound sender's side of the provider switch: read it once per invocation, probe a
provider that is down when it is this container's turn, count each provider's answers
toward its run of failures, and audit every change the sender makes to the switch.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.mail.audit import AuditLog
from chalicelib.mail.failover import ProviderSwitch, SwitchState, outage
from chalicelib.platform.errors import error_class
from chalicelib.platform.logging import log_event
from chalicelib.platform.settings import Settings

EVENT_TYPE = "outbound_sender"


class Failover:
    """The switch as one invocation sees it (``state``) and the writes it makes."""

    def __init__(
        self,
        switch: ProviderSwitch,
        audit: AuditLog,
        settings: Settings,
        *,
        probes: dict[str, Callable[[], None]],
    ) -> None:
        self._switch = switch
        self._audit_log = audit
        self._settings = settings
        self._probes = probes
        self.state = SwitchState()

    def read(self) -> None:
        """Read the switch (and probe the provider that is down, at most once a period)."""
        try:
            self.state = self._switch.read()
            down = self.state.down
            if down and self._switch.claim_probe(self._settings.failover_probe_seconds):
                self._probe(down)
        except Exception as err:
            # Unknown switch: every stream's primary, which loses nothing (it may wait).
            log_event("provider switch unread", event_type=EVENT_TYPE, error_class=error_class(err))
        if self.state.active:
            log_event(
                "outbound provider switch active",
                event_type=EVENT_TYPE,
                provider=self.state.forced or self.state.down,
                outcome="failover",
            )

    def _probe(self, provider: str) -> None:
        try:
            self._probes[provider]()
        except Exception as err:
            log_event("provider probe failed", provider=provider, error_class=error_class(err))
            return
        if self._switch.close(provider):
            self.state = self._switch.read()
            self._audit("outbound provider switch closed", f"{provider} answered a probe")

    def count(self, provider: str, err: BaseException | None) -> None:
        """A provider's answer, for its run of failures (the switch opens at the threshold)."""
        try:
            if err is None:
                self._switch.record_success(provider, self.state)
                self.state.failures.pop(provider, None)
            elif outage(err) and self._switch.record_failure(
                provider, threshold=self._settings.failover_threshold, error=error_class(err)
            ):
                self.state = self._switch.read()
                self._audit("outbound provider switch opened", self.state.reason)
        except Exception as write_err:
            log_event(
                "provider switch not updated",
                event_type=EVENT_TYPE,
                error_class=error_class(write_err),
            )

    def _audit(self, action: str, reason: str) -> None:
        log_event(action, event_type=EVENT_TYPE, reason=reason)
        try:
            self._audit_log.record(action, actor="outbound_sender", reason=reason)
        except Exception as err:
            log_event("audit write failed", event_type=EVENT_TYPE, error_class=error_class(err))
