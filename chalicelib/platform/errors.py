"""mailroom's error tree; the retry policy lives on the class.

    MailroomError                 root of every runtime failure (transient=False)
    ├── TransientError            retry: let SQS redeliver (transient=True)
    │   ├── ProviderTransientError   a service said 5xx/429/timeout
    │   ├── EffectNotRecorded        the provider acted; writing that down failed (may_have_acted)
    │   ├── ProofNotYetPossible      too soon to search for an uncertain effect: not an attempt
    │   └── AlreadyInProgress        (idempotency) another attempt holds the key: not an attempt
    ├── PermanentError            no retry will help: dead-letter now, with the reason
    │   ├── AccessDenied             AWS refused a call our IAM policy lacks: fix, then redrive
    │   ├── ProviderPermanentError   a service rejected the request (4xx)
    │   │   └── ProviderAuthError       credentials or configuration rejected (401)
    │   └── PoisonMessageError       the message itself is malformed (poison=True)
    ProviderError                 mixin carrying provider, status_code, error_code, excerpt and
                                  may_have_acted (the request left and no answer proves rejection)

    ConfigurationError            outside the runtime tree: a bad setting, raised at start-up

An exception that is not a MailroomError is a bug; ``is_transient`` treats it as
transient, so the batch runner retries it and dead-letters it after the attempt limit. The
exception is AWS refusing a call for want of permission (``access_denied``): wherever it was
caught and wrapped, it is classified as ``AccessDenied``, because no retry can succeed until a
person fixes the policy.

``may_have_acted`` answers the idempotency protocol's one question after a failure: could the
side effect exist now? Only an answer that proves rejection (an HTTP error the provider wrote
before acting, a refused connection) or an error raised before any request says no.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

# The codes AWS answers a call with when the caller's policy does not allow it (S3, SNS:
# AccessDenied; DynamoDB, SSM, SQS's JSON protocol: AccessDeniedException; SNS, SES:
# AuthorizationError; EC2-style services: UnauthorizedOperation).
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnauthorizedOperation",
    }
)
# AWS's message: "User: <arn> is not authorized to perform: <action> on resource: <arn> ...".
_PERFORM = re.compile(
    r"perform: (?P<action>[\w-]+:[\w-]+)(?: on resource: (?P<resource>[^\s\\\"]+))?"
)


class ConfigurationError(Exception):
    """A setting is missing or malformed; names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class MailroomError(Exception):
    """Root of every runtime failure; ``reason`` is safe to log and to store."""

    transient: ClassVar[bool] = False
    poison: ClassVar[bool] = False
    # False for failures that are not an attempt at the message (a lock held elsewhere):
    # they never count towards the attempt limit.
    counts_as_attempt: ClassVar[bool] = True
    # Whether the side effect may exist after this error (see ``may_have_acted``).
    may_have_acted: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(MailroomError):
    """Retrying later may succeed."""

    transient = True


class EffectNotRecorded(TransientError):
    """The provider acted, but recording that failed: the key must stay uncertain."""

    may_have_acted = True


class AlreadyInProgress(TransientError):
    """Another invocation holds the idempotency lock for this key; SQS will redeliver."""

    counts_as_attempt = False


class ProofNotYetPossible(TransientError):
    """An uncertain key's proof must wait: the provider may not show a recent effect yet."""

    counts_as_attempt = False


class PermanentError(MailroomError):
    """No retry will help; the message is dead-lettered with the reason."""


class AccessDenied(PermanentError):
    """AWS refused a call the function's IAM policy does not allow; names action and resource."""

    def __init__(self, action: str, resource: str) -> None:
        super().__init__(f"AccessDenied: {action} on {resource}")
        self.action = action
        self.resource = resource


class PoisonMessageError(PermanentError):
    """The message itself cannot be parsed or fails its model."""

    poison = True


class ProviderError(MailroomError):
    """A failure reported by an external service, with the context to diagnose it."""

    def __init__(
        self,
        reason: str,
        *,
        provider: str,
        status_code: int | None = None,
        error_code: int | str | None = None,
        excerpt: str = "",
        may_have_acted: bool = False,
    ) -> None:
        super().__init__(reason)
        self.provider = provider
        self.status_code = status_code
        self.error_code = error_code
        self.excerpt = excerpt[:300]
        self.may_have_acted = may_have_acted

    def __str__(self) -> str:
        parts = [f"{self.provider}: {self.reason}"]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.error_code is not None:
            parts.append(f"error_code={self.error_code}")
        return " ".join(parts)


class ProviderTransientError(ProviderError, TransientError):
    """The service is unavailable, rate limiting, or timed out."""


def transient_factory(provider: str) -> Callable[..., ProviderTransientError]:
    """``provider``'s transient error as ``(reason, *, acted, **context)``: ``acted`` is whether
    the request may have reached it (``may_have_acted``)."""

    def transient(reason: str, *, acted: bool, **context: Any) -> ProviderTransientError:
        return ProviderTransientError(reason, provider=provider, may_have_acted=acted, **context)

    return transient


class ProviderPermanentError(ProviderError, PermanentError):
    """The service rejected the request; resending it unchanged will fail again."""


class ProviderAuthError(ProviderPermanentError):
    """The service rejected our credentials: a configuration problem for a person."""


def access_denied(err: BaseException) -> AccessDenied | None:
    """The permission failure behind ``err`` (itself, its cause, or the AWS error it wraps)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AccessDenied):
            return current
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code in ACCESS_DENIED_CODES or "<Code>AccessDenied</Code>" in message:
                found = _PERFORM.search(message)
                operation = str(getattr(current, "operation_name", "") or "unknown call")
                return AccessDenied(
                    found["action"] if found else operation,
                    (found["resource"] if found else None) or "a resource AWS did not name",
                )
        current = current.__cause__ or current.__context__
    return None


def is_transient(err: BaseException) -> bool:
    """Retry policy for any exception: unknown exceptions are retried, never dropped."""
    if access_denied(err) is not None:
        return False
    if isinstance(err, MailroomError):
        return err.transient
    return True


def counts_as_attempt(err: BaseException) -> bool:
    """Whether ``err`` ends an attempt at the message (and counts towards the limit)."""
    if isinstance(err, MailroomError):
        return err.counts_as_attempt
    return True


def may_have_acted(err: BaseException) -> bool:
    """Whether the side effect may exist after ``err``: only a provider's proof says no.

    Our own errors are raised before any request (validation, routing, configuration);
    anything else (a bug, an AWS error mid-way) may have struck after the provider acted.
    """
    if isinstance(err, MailroomError):
        return err.may_have_acted
    return True


def error_class(err: BaseException) -> str:
    """The name logged and stored as ``error_class`` (``AccessDenied`` however it was wrapped:
    the permission alarm's metric filter matches it)."""
    if access_denied(err) is not None:
        return AccessDenied.__name__
    return type(err).__name__


def reason_of(err: BaseException) -> str:
    """A short, log-safe reason for ``err``."""
    denied = access_denied(err)
    if denied is not None:
        return denied.reason[:500]
    if isinstance(err, ProviderError):
        return str(err)[:500]
    if isinstance(err, MailroomError):
        return err.reason[:500]
    # An AWS error code (AccessDeniedException, ThrottlingException) is log-safe, and the
    # AccessDenied metric filter (F19) finds it in the outcome line.
    response = getattr(err, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"unexpected {type(err).__name__}" + (f" ({str(code)[:60]})" if code else "")
