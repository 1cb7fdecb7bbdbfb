"""CloudWatch metrics written as Embedded Metric Format on the log lines we already write.

No API call per message: CloudWatch Logs extracts the metrics from the ``_aws`` block of a
JSON line (EMF spec: one or more directives, each a namespace, dimension sets naming
members of the line, and metrics naming numeric members). The catalogue below is the
contract the template's alarms and dashboard read; a test cross-checks them.

Contract for pipelines (the Gmail forwarder, the bouncer and every later one):

* every message outcome goes through ``chalicelib.platform.logging.log_outcome``: that yields
  ``Messages`` and ``HandlerDuration`` per ``event_type`` (and ``outcome``), and for
  ``dead_lettered`` a ``DeadLetters`` count per ``disposition`` (pass ``disposition=`` when
  known: ``poison``, ``permanent``, ``exhausted``; else it is derived from the error class);
* a provider failure is a ``chalicelib.platform.errors.ProviderError`` with ``provider`` one of
  ``PROVIDERS``; its outcome line then carries ``provider`` and ``provider_signal`` and counts
  ``ProviderErrors``. The signal is ``auth_invalid`` for ``ProviderAuthError`` (and any
  error class named ``*Auth*``), 401 or an
  ``invalid_grant`` error code (Gmail authorization: raise ``ProviderAuthError``);
  ``rate_limited`` for 429 or a throttling error code (Postmark 429, Gmail
  ``rateLimitExceeded``, SES ``Throttling`` on SendBounce: put it in ``error_code``);
  ``unavailable`` for 5xx, 408, timeouts and refused connections; ``rejected`` otherwise;
* the probe writes ``ProbeSuccess`` (1 or 0) and ``ProbeLatency`` per ``probe``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

NAMESPACE_VARIABLE = "MAILROOM_METRICS_NAMESPACE"
PROVIDERS = frozenset({"freescout", "postmark", "gmail", "ses"})
SIGNALS = frozenset({"unavailable", "rate_limited", "auth_invalid", "rejected"})
DISPOSITIONS = frozenset({"poison", "permanent", "exhausted"})
THROTTLING_CODES = frozenset(
    {
        "429",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "rateLimitExceeded",
        "userRateLimitExceeded",
    }
)
# Postmark ErrorCode 100 is "maintenance"; a timeout or refused connection has no status.
UNAVAILABLE_CODES = frozenset({"100"})
AUTH_CODES = frozenset({"invalid_grant", "10"})
# ``ProviderError.__str__``: "<provider>: <reason>[ status=<n>][ error_code=<code>]".
_PROVIDER_REASON = re.compile(
    r"^(?P<provider>[a-z0-9_]+): .*?(?: status=(?P<status>\d{3}))?(?: error_code=(?P<code>\S+))?$",
    re.DOTALL,
)


class Metric(NamedTuple):
    """One metric of the catalogue: unit, dimension sets, and what it counts.

    (A NamedTuple, not a dataclass: the webhook's cold start need not import dataclasses.)
    """

    name: str
    unit: str
    dimension_sets: tuple[tuple[str, ...], ...]
    meaning: str


# Both per pipeline and outcome, and per pipeline alone (volume, p50/p95 of a pipeline).
BY_PIPELINE = (("event_type", "outcome"), ("event_type",))
MESSAGES = Metric(
    "Messages",
    "Count",
    BY_PIPELINE,
    "message outcomes per pipeline and outcome (success, duplicate, retry, dead_lettered, …)",
)
HANDLER_DURATION = Metric(
    "HandlerDuration", "Milliseconds", BY_PIPELINE, "time to settle one message"
)
DEAD_LETTERS = Metric(
    "DeadLetters",
    "Count",
    (("event_type", "disposition"), ("disposition",)),
    "messages the handler dead-lettered, by disposition (poison, permanent, exhausted)",
)
PROVIDER_ERRORS = Metric(
    "ProviderErrors",
    "Count",
    (("provider", "provider_signal"),),
    "provider failures: unavailable, rate_limited, auth_invalid, rejected",
)
PROBE_SUCCESS = Metric(
    "ProbeSuccess", "Count", (("probe",),), "1 when a probe arrived in time, 0 when it did not"
)
PROBE_LATENCY = Metric(
    "ProbeLatency", "Milliseconds", (("probe",),), "probe sent → seen at its destination"
)
CATALOGUE = (
    MESSAGES,
    HANDLER_DURATION,
    DEAD_LETTERS,
    PROVIDER_ERRORS,
    PROBE_SUCCESS,
    PROBE_LATENCY,
)
# Members EMF adds to a line besides its whitelisted fields: the metric values and ``_aws``.
METRIC_MEMBERS = frozenset(m.name for m in CATALOGUE) | {"_aws"}


def namespace(env: Mapping[str, str] | None = None) -> str:
    """The CloudWatch namespace: ``MAILROOM_METRICS_NAMESPACE``, else ``mailroom/<stage>``."""
    env = os.environ if env is None else env
    explicit = (env.get(NAMESPACE_VARIABLE) or "").strip()
    return explicit or f"mailroom/{(env.get('MAILROOM_STAGE') or 'local').strip() or 'local'}"


def provider_signal(
    error_class: str | None, status_code: int | None, error_code: str | None
) -> str:
    """What a provider failure says about the provider (see the module docstring)."""
    code = None if error_code is None else str(error_code)
    # By name: subclasses (the Gmail client's GmailAuthRevoked) log their own class name.
    if "Auth" in (error_class or "") or status_code == 401 or code in AUTH_CODES:
        return "auth_invalid"
    if status_code == 429 or code in THROTTLING_CODES:
        return "rate_limited"
    if code in UNAVAILABLE_CODES or (code is None and status_code in {408, None}):
        return "unavailable"
    if status_code is not None and status_code >= 500:
        return "unavailable"
    return "rejected"


def provider_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``provider``, ``status_code`` and ``provider_signal`` of an outcome line with an error.

    Taken from the fields when the caller passed them, else read from the reason, which
    ``errors.reason_of`` writes in ``ProviderError``'s own format.
    """
    if not fields.get("error_class"):
        return {}
    provider = fields.get("provider")
    status = fields.get("status_code")
    code = fields.get("error_code")
    found = _PROVIDER_REASON.match(str(fields.get("reason") or ""))
    if provider is None and found is not None and found["provider"] in PROVIDERS:
        provider = found["provider"]
        status = status if status is not None else found["status"]
        code = code if code is not None else found["code"]
    if provider not in PROVIDERS:
        return {}
    status_code = int(status) if status is not None and str(status).isdigit() else None
    return {
        "provider": provider,
        "status_code": status_code,
        "provider_signal": provider_signal(fields["error_class"], status_code, code),
    }


def disposition(fields: Mapping[str, Any]) -> str:
    """The dead letter's disposition: as passed, else poison or permanent by error class."""
    given = fields.get("disposition")
    if given:
        return str(given)
    return "poison" if "Poison" in str(fields.get("error_class") or "") else "permanent"


def emf(metrics: Mapping[Metric, float], *, ns: str | None = None) -> dict[str, Any]:
    """The ``_aws`` member and metric values to add to a line that holds the dimensions."""
    directives = _directives(tuple(metrics), ns or namespace())
    block: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}
    }
    block.update({metric.name: value for metric, value in metrics.items()})
    return block


@lru_cache(maxsize=64)
def _directives(members: tuple[Metric, ...], ns: str) -> list[dict[str, Any]]:
    """EMF directives for ``members``; metrics with the same dimension sets share one.
    Cached: a handful of combinations recur on every line (the result is only serialised)."""
    grouped: dict[tuple[tuple[str, ...], ...], list[Metric]] = {}
    for metric in members:
        grouped.setdefault(metric.dimension_sets, []).append(metric)
    return [
        {
            "Namespace": ns,
            "Dimensions": [list(s) for s in dimension_sets],
            "Metrics": [{"Name": m.name, "Unit": m.unit} for m in group],
        }
        for dimension_sets, group in grouped.items()
    ]


def outcome_metrics(line: Mapping[str, Any]) -> dict[Metric, float]:
    """The metrics one outcome line carries (its fields already hold the dimensions)."""
    metrics: dict[Metric, float] = {MESSAGES: 1, HANDLER_DURATION: float(line["duration_ms"])}
    if line.get("outcome") == "dead_lettered":
        metrics[DEAD_LETTERS] = 1
    if line.get("provider_signal"):
        metrics[PROVIDER_ERRORS] = 1
    return metrics
