"""The one context object every command gets: the target stage, its clients and stores.

``--stage`` uses the usual AWS credential chain (``AWS_REGION`` honoured); ``--local``
reads ``.mailroom/local.json`` written by the local stack (``mailroom_local/stack.py``) and
signs as the stack's operator user, whose policy is the documented operator policy.
Clients and stores are built on first use, so ``routes list`` never touches SQS.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from chalicelib.mail.audit import AuditLog
from chalicelib.mail.delivery_log import DeliveryLog
from chalicelib.mail.routing import DynamoRouteStore
from chalicelib.mail.suppression import SuppressionList
from chalicelib.platform.errors import ConfigurationError
from chalicelib.platform.idempotency import IdempotencyStore
from chalicelib.platform.settings import Settings
from mailroom_cli.console import ConfigError
from mailroom_cli.pipelines import BY_NAME, PIPELINES, Pipeline

DEFAULT_STATE_DIR = Path(".mailroom")


@dataclass(frozen=True)
class Target:
    """Where the commands act: a stage in AWS, or the local stack's embedded AWS."""

    stage: str
    region: str
    endpoint_url: str | None = None
    local: bool = False
    routes_table: str | None = None
    state_table: str | None = None
    bucket: str | None = None
    log_file: Path | None = None
    state_dir: Path | None = None
    # The local stack's operator keys (``local.json``); None for a stage in AWS.
    credentials: dict[str, str] | None = field(default=None, hash=False, compare=False)
    calls_file: Path | None = None


def local_target(state_dir: Path) -> Target:
    """The local stack's target, from ``<state_dir>/local.json``."""
    path = state_dir / "local.json"
    try:
        local = json.loads(path.read_text())
        return Target(
            stage=str(local.get("stage", "local")),
            region=str(local["region"]),
            endpoint_url=str(local["aws_endpoint_url"]),
            local=True,
            routes_table=str(local["tables"]["routes"]),
            state_table=str(local["tables"]["state"]),
            bucket=str(local["bucket"]),
            log_file=Path(local["log_file"]) if local.get("log_file") else state_dir / "stack.log",
            state_dir=state_dir,
            credentials=local.get("credentials", {}).get("operator"),
            calls_file=Path(local["calls_file"]) if local.get("calls_file") else None,
        )
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: is the local stack running (make run)?") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is not a local stack description ({err})") from None


def aws_target(stage: str, region: str | None = None) -> Target:
    """A stage in AWS; region from ``--region``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("no AWS region: set AWS_REGION or pass --region")
    return Target(stage=stage, region=region)


@dataclass
class Context:
    """The stage's clients and stores, built once per command, on first use.

    The target itself is resolved on first use too, so ``--help`` needs no stage."""

    resolve_target: Callable[[], Target]
    as_json: bool = False
    _clients: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def target(self) -> Target:
        return self.resolve_target()

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            kwargs: dict[str, Any] = {
                "region_name": self.target.region,
                "config": Config(retries={"max_attempts": 3, "mode": "standard"}),
            }
            session = boto3.session.Session()
            if self.target.endpoint_url:
                kwargs.update(endpoint_url=self.target.endpoint_url, **self._local_keys(session))
            self._clients[service] = session.client(service, **kwargs)
        return self._clients[service]

    def _local_keys(self, session: Any) -> dict[str, str]:
        """The operator's keys on the local stack, its calls recorded for the permission
        test; a stack without them (older local.json) takes the administrator's."""
        keys = self.target.credentials
        if not keys:
            return {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        from mailroom_local import iam

        iam.install({iam.OPERATOR: keys}, self.target.calls_file, function=iam.OPERATOR)
        iam.prepare(session)
        return dict(keys)

    @property
    def stage(self) -> str:
        return self.target.stage

    @cached_property
    def settings(self) -> Settings:
        env = {"MAILROOM_STAGE": self.stage, "AWS_REGION": self.target.region}
        if self.target.endpoint_url:
            env["MAILROOM_AWS_ENDPOINT_URL"] = self.target.endpoint_url
        for name, value in (
            ("MAILROOM_ROUTES_TABLE", self.target.routes_table),
            ("MAILROOM_STATE_TABLE", self.target.state_table),
            ("MAILROOM_MAIL_BUCKET", self.target.bucket or self._aws_bucket()),
        ):
            if value:
                env[name] = value
        for name, value in os.environ.items():
            if name.startswith("MAILROOM_") and name not in env and not self.target.local:
                env[name] = value
        try:
            return Settings.from_env(env)
        except ConfigurationError as err:
            raise ConfigError(str(err)) from None

    def _aws_bucket(self) -> str | None:
        if self.target.local or os.environ.get("MAILROOM_MAIL_BUCKET"):
            return None
        # infra/template.yaml names the bucket mailroom-<stage>-mail-<account id>.
        return f"mailroom-{self.stage}-mail-{self.account_id}"

    @cached_property
    def identity(self) -> dict[str, str]:
        answer = self.client("sts").get_caller_identity()
        return {"account": str(answer["Account"]), "arn": str(answer["Arn"])}

    @property
    def account_id(self) -> str:
        return self.identity["account"]

    @cached_property
    def actor(self) -> str:
        """Who acts, for audit records: the caller's AWS identity, or the local user."""
        if self.target.local:
            return f"local:{getpass.getuser()}"
        return self.identity["arn"]

    @cached_property
    def routes(self) -> DynamoRouteStore:
        # No cache: the operator reads what is stored now.
        return DynamoRouteStore(
            self.settings.routes_table, cache_seconds=0, client=self.client("dynamodb")
        )

    @cached_property
    def suppression(self) -> SuppressionList:
        return SuppressionList(self.settings.state_table, client=self.client("dynamodb"))

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog.for_settings(self.settings, self.client("dynamodb"))

    @cached_property
    def delivery_log(self) -> DeliveryLog:
        return DeliveryLog.for_settings(self.settings, self.client("dynamodb"))

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore.for_settings(self.settings, self.client("dynamodb"))

    def record(self, action: str, *, reason: str, count: int = 1, **details: str) -> None:
        """Write the audit record of a destructive action."""
        self.audit.record(
            action,
            actor=self.actor,
            reason=reason,
            count=count,
            details={"stage": self.stage, **details},
        )

    def key_record(self, key: str) -> dict[str, Any] | None:
        """The idempotency record of ``key`` (status, result, attempts), read-only."""
        record = self.idempotency.inspect(key)
        return None if record is None else asdict(record)

    def queue_url(self, name: str) -> str | None:
        """URL of the queue called ``name``, or None when the stage has no such queue."""
        from botocore.exceptions import ClientError

        try:
            return str(self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as err:
            if "NonExistentQueue" in str(err.response.get("Error", {}).get("Code", "")):
                return None
            raise

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.target.region}:{self.account_id}:{name}"

    def pipelines(self, name: str | None = None) -> list[Pipeline]:
        """The pipelines ``name`` selects (None or ``all``: every one the stage has)."""
        if name is None or name == "all":
            return [p for p in PIPELINES if self.queue_url(p.queue_name(self.stage))]
        if name not in BY_NAME:
            known = ", ".join(BY_NAME)
            raise ConfigError(f"unknown pipeline {name!r} (known: {known}, all)")
        pipeline = BY_NAME[name]
        if self.queue_url(pipeline.queue_name(self.stage)) is None:
            raise ConfigError(f"pipeline {name!r} is not deployed on stage {self.stage!r}")
        return [pipeline]
