"""Every environment variable mailroom reads, typed and validated once per container.

Precedence is explicit argument, then environment, then default. A missing or malformed
value raises ``ConfigurationError`` naming the variable. Resource names default to the
``mailroom-<stage>-<name>`` convention that ``infra/template.yaml`` creates, so a stage
needs only ``MAILROOM_STAGE`` and the ARNs that embed the account id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from chalicelib.platform.errors import ConfigurationError

T = TypeVar("T")
DEFAULT_POSTMARK_API_URL = "https://api.postmarkapp.com"
# Lambda's synchronous invocation payload limit is 6 MB; keep room for the event envelope.
DEFAULT_MAX_WEBHOOK_BYTES = 6_000_000
# SNS publishes are capped at 256 KiB including attributes; keep room for them.
DEFAULT_CLAIM_CHECK_BYTES = 240_000
DEFAULT_GMAIL_API_URL = "https://gmail.googleapis.com"
DEFAULT_GMAIL_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
# Postmark's test sink: accepted and counted like real mail, never delivered.
PROBE_SINK = "test@blackhole.postmarkapp.com"
OUTBOUND_PROVIDERS = ("postmark", "ses")


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(name, f"expected a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(name, f"expected true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment; see the README's configuration reference."""

    stage: str
    region: str
    aws_endpoint_url: str | None
    routes_table: str
    state_table: str
    mail_bucket: str
    inbound_topic_arn_value: str | None
    outbound_topic_arn_value: str | None
    ssm_prefix: str
    secrets_ttl_seconds: int
    routes_cache_seconds: int
    freescout_url_value: str | None
    freescout_imported: bool
    ops_mailbox_id: int | None
    ops_note_user_id: int
    postmark_api_url: str
    http_timeout_seconds: int
    max_webhook_bytes: int
    claim_check_bytes: int
    quarantine_max_bytes: int
    idempotency_ttl_days: int
    function_timeout_seconds: int
    signature_tolerance_seconds: int
    max_attempts: int
    proof_delay_seconds: int
    log_level: str
    # SES inbound: router → gmail forwarder / bouncer
    gmail_queue_name: str = ""
    bouncer_queue_name: str = ""
    bounce_sender_value: str | None = None
    bounce_sender_arn: str | None = None
    ses_endpoint_url: str | None = None
    gmail_api_url: str = DEFAULT_GMAIL_API_URL
    gmail_token_url: str = DEFAULT_GMAIL_TOKEN_URL
    gmail_labels: tuple[str, ...] = ("INBOX", "UNREAD")
    bounce_interval_ms: int = 1000
    gmail_timeout_seconds: int = 60
    postmark_spam_score: float = 5.0
    # Observability: metrics namespace and the end-to-end probe.
    metrics_namespace: str = "mailroom/local"
    probe_enabled: bool = False
    probe_rate_minutes: int = 5
    probe_address: str | None = None
    probe_from: str | None = None
    probe_webhook_url: str | None = None
    probe_outbound_to: str = "test@blackhole.postmarkapp.com"
    probe_timeout_seconds: int = 900
    # Outbound providers: the order per message stream, and the failover switch.
    outbound_providers: tuple[str, ...] = ("postmark",)
    outbound_providers_by_stream: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ses_configuration_set: str | None = None
    failover_threshold: int = 3
    failover_probe_seconds: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        stage = _str(env, "MAILROOM_STAGE", "local") or "local"
        prefix = f"mailroom-{stage}"
        region = _str(env, "AWS_REGION") or _str(env, "AWS_DEFAULT_REGION")
        if region is None:
            raise ConfigurationError("AWS_REGION", "not set (nor AWS_DEFAULT_REGION)")
        log_level = (_str(env, "MAILROOM_LOG_LEVEL", "INFO") or "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigurationError("MAILROOM_LOG_LEVEL", f"unknown level {log_level!r}")
        return cls(
            stage=stage,
            region=region,
            aws_endpoint_url=_str(env, "MAILROOM_AWS_ENDPOINT_URL"),
            routes_table=_str(env, "MAILROOM_ROUTES_TABLE", f"{prefix}-routes") or "",
            state_table=_str(env, "MAILROOM_STATE_TABLE", f"{prefix}-state") or "",
            mail_bucket=_str(env, "MAILROOM_MAIL_BUCKET", f"{prefix}-mail") or "",
            inbound_topic_arn_value=_str(env, "MAILROOM_INBOUND_TOPIC_ARN"),
            outbound_topic_arn_value=_str(env, "MAILROOM_OUTBOUND_TOPIC_ARN"),
            ssm_prefix=(_str(env, "MAILROOM_SSM_PREFIX", f"/mailroom/{stage}") or "").rstrip("/"),
            secrets_ttl_seconds=_int(env, "MAILROOM_SECRETS_TTL_SECONDS", 300),
            routes_cache_seconds=_int(env, "MAILROOM_ROUTES_CACHE_SECONDS", 60),
            freescout_url_value=_str(env, "MAILROOM_FREESCOUT_URL"),
            freescout_imported=_bool(env, "MAILROOM_FREESCOUT_IMPORTED", False),
            ops_mailbox_id=_int(env, "MAILROOM_OPS_MAILBOX_ID", 0, minimum=0) or None,
            ops_note_user_id=_int(env, "MAILROOM_OPS_NOTE_USER_ID", 1, minimum=1),
            postmark_api_url=_str(env, "MAILROOM_POSTMARK_API_URL", DEFAULT_POSTMARK_API_URL)
            or DEFAULT_POSTMARK_API_URL,
            http_timeout_seconds=_int(env, "MAILROOM_HTTP_TIMEOUT_SECONDS", 10, minimum=1),
            max_webhook_bytes=_int(
                env, "MAILROOM_MAX_WEBHOOK_BYTES", DEFAULT_MAX_WEBHOOK_BYTES, minimum=1024
            ),
            claim_check_bytes=_int(
                env, "MAILROOM_CLAIM_CHECK_BYTES", DEFAULT_CLAIM_CHECK_BYTES, minimum=1024
            ),
            quarantine_max_bytes=_int(
                env, "MAILROOM_QUARANTINE_MAX_BYTES", 1_048_576, minimum=1024
            ),
            idempotency_ttl_days=_int(env, "MAILROOM_IDEMPOTENCY_TTL_DAYS", 30, minimum=15),
            function_timeout_seconds=_int(env, "MAILROOM_FUNCTION_TIMEOUT_SECONDS", 60, minimum=1),
            signature_tolerance_seconds=_int(
                env, "MAILROOM_SIGNATURE_TOLERANCE_SECONDS", 300, minimum=1
            ),
            max_attempts=_int(env, "MAILROOM_MAX_ATTEMPTS", 5, minimum=1),
            proof_delay_seconds=_int(env, "MAILROOM_PROOF_DELAY_SECONDS", 60),
            log_level=log_level,
            gmail_queue_name=_str(env, "MAILROOM_GMAIL_QUEUE", f"{prefix}-gmail-forwarder") or "",
            bouncer_queue_name=_str(env, "MAILROOM_BOUNCER_QUEUE", f"{prefix}-bouncer") or "",
            bounce_sender_value=_str(env, "MAILROOM_BOUNCE_SENDER"),
            bounce_sender_arn=_str(env, "MAILROOM_BOUNCE_SENDER_ARN"),
            ses_endpoint_url=_str(env, "MAILROOM_SES_ENDPOINT_URL"),
            gmail_api_url=(
                _str(env, "MAILROOM_GMAIL_API_URL", DEFAULT_GMAIL_API_URL) or DEFAULT_GMAIL_API_URL
            ).rstrip("/"),
            gmail_token_url=_str(env, "MAILROOM_GMAIL_TOKEN_URL", DEFAULT_GMAIL_TOKEN_URL)
            or DEFAULT_GMAIL_TOKEN_URL,
            gmail_labels=tuple(
                label.strip()
                for label in (_str(env, "MAILROOM_GMAIL_LABELS", "INBOX,UNREAD") or "").split(",")
                if label.strip()
            ),
            bounce_interval_ms=_int(env, "MAILROOM_BOUNCE_INTERVAL_MS", 1000, minimum=0),
            gmail_timeout_seconds=_int(env, "MAILROOM_GMAIL_TIMEOUT_SECONDS", 60, minimum=1),
            postmark_spam_score=_float(env, "MAILROOM_POSTMARK_SPAM_SCORE", 5.0),
            metrics_namespace=_str(env, "MAILROOM_METRICS_NAMESPACE", f"mailroom/{stage}") or "",
            probe_enabled=_bool(env, "MAILROOM_PROBE_ENABLED", False),
            probe_rate_minutes=_int(env, "MAILROOM_PROBE_RATE_MINUTES", 5, minimum=1),
            probe_address=_str(env, "MAILROOM_PROBE_ADDRESS"),
            probe_from=_str(env, "MAILROOM_PROBE_FROM"),
            probe_webhook_url=_str(env, "MAILROOM_PROBE_WEBHOOK_URL"),
            probe_outbound_to=_str(env, "MAILROOM_PROBE_OUTBOUND_TO", PROBE_SINK) or PROBE_SINK,
            probe_timeout_seconds=_int(env, "MAILROOM_PROBE_TIMEOUT_SECONDS", 900, minimum=60),
            outbound_providers=_providers(env, "MAILROOM_OUTBOUND_PROVIDERS"),
            outbound_providers_by_stream=_stream_providers(
                env, "MAILROOM_OUTBOUND_STREAM_PROVIDERS"
            ),
            ses_configuration_set=_str(env, "MAILROOM_SES_CONFIGURATION_SET", prefix),
            failover_threshold=_int(env, "MAILROOM_FAILOVER_THRESHOLD", 3, minimum=1),
            failover_probe_seconds=_int(env, "MAILROOM_FAILOVER_PROBE_SECONDS", 60, minimum=1),
        )

    @property
    def inbound_topic_arn(self) -> str:
        return _required(self.inbound_topic_arn_value, "MAILROOM_INBOUND_TOPIC_ARN")

    @property
    def outbound_topic_arn(self) -> str:
        return _required(self.outbound_topic_arn_value, "MAILROOM_OUTBOUND_TOPIC_ARN")

    @property
    def freescout_url(self) -> str:
        return _required(self.freescout_url_value, "MAILROOM_FREESCOUT_URL").rstrip("/")

    @property
    def bounce_sender(self) -> str:
        return _required(self.bounce_sender_value, "MAILROOM_BOUNCE_SENDER")

    def providers_for(self, message_stream: str) -> tuple[str, ...]:
        """The ordered outbound providers of ``message_stream`` (first = primary)."""
        return dict(self.outbound_providers_by_stream).get(message_stream, self.outbound_providers)

    @property
    def sends_through_ses(self) -> bool:
        """Whether any message stream may send through SES (whose suppression list then
        mirrors ours)."""
        streams = [self.outbound_providers, *(p for _, p in self.outbound_providers_by_stream)]
        return any("ses" in providers for providers in streams)

    def parameter(self, name: str) -> str:
        """Full SSM parameter name for ``name`` (e.g. ``postmark/webhook-basic-auth``)."""
        return f"{self.ssm_prefix}/{name}"


def _provider_list(name: str, raw: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    unknown = sorted(set(names) - set(OUTBOUND_PROVIDERS))
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigurationError(
            name, f"expected an ordered list of {', '.join(OUTBOUND_PROVIDERS)}, got {raw!r}"
        )
    return names


def _providers(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return _provider_list(name, _str(env, name, "postmark") or "postmark")


def _stream_providers(env: Mapping[str, str], name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``stream=ses,postmark;broadcast=postmark`` as ((stream, providers), ...)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for entry in (_str(env, name, "") or "").split(";"):
        if not entry.strip():
            continue
        stream, sep, names = entry.partition("=")
        if not sep or not stream.strip():
            raise ConfigurationError(name, f"expected stream=provider,provider; got {entry!r}")
        found.append((stream.strip(), _provider_list(name, names)))
    return tuple(found)


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise ConfigurationError(name, "not set")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this container, read once."""
    return Settings.from_env()


def per_container(build: Callable[[Settings], T]) -> Callable[[], T]:
    """``build(settings)`` once per container, and again only if the settings are reloaded
    (tests and the local stack reload them when they switch endpoints)."""
    built: list[tuple[Settings, T]] = []

    def get() -> T:
        settings = get_settings()
        if not built or built[0][0] is not settings:
            built[:] = [(settings, build(settings))]
        return built[0][1]

    return get
