"""moto's IAM checks as the local stack needs them: every call checked against its resource.

moto checks SQS queues and S3 keys against a policy's Resource, but asks DynamoDB, SNS, SSM
and SQS's GetQueueUrl about resource ``*``, which no resource-scoped policy matches, and a
DynamoDB transaction as ``TransactWriteItems``, an action AWS does not have. Patched here:
those calls are checked per resource and per item action (``iam_calls.targets``), a refusal
names action and resource in the service's own error format, and the key ``local`` is the
account's administrator (the stack's provisioning, the stand-ins that play AWS, the tests'
own look-ups).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from moto import settings
from moto.core import authorization
from moto.core.exceptions import JsonRESTError, _RESTError
from moto.iam import access_control
from moto.s3.exceptions import S3ClientError

from mailroom_local.iam_calls import targets

ADMIN_KEY = "local"
_MARK = "_mailroom_iam_patch"
# Services whose requests moto authorizes against resource "*" (SQS: GetQueueUrl, which names
# the queue by QueueName) or as an action IAM does not have (SQS's batches): read the
# actions and resources ourselves.
_RESOLVED = {"dynamodb", "sns", "ssm", "sqs"}
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


class _AdminKey:
    """The account's administrator, signing with ``local``/``local``."""

    def __init__(self, account_id: str) -> None:
        self.arn = f"arn:aws:iam::{account_id}:root"

    def create_credentials(self) -> Any:
        from botocore.credentials import Credentials

        return Credentials(ADMIN_KEY, ADMIN_KEY)

    def collect_policies(self) -> list[str]:
        return [_ALLOW_ALL]


class _QueryDenied(_RESTError):
    """AccessDenied as the query-protocol services (SNS) answer it."""

    code = 403

    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


def _denied_message(request: Any) -> str:
    action, resource = request._action, getattr(request, "_mailroom_resource", "*")
    return (
        f"User: {request._access_key.arn} is not authorized to perform: {action} on resource: "
        f"{resource} because no identity-based policy allows the {action} action"
    )


def _params(responder: Any) -> dict[str, Any]:
    """The call's parameters: the JSON body, or the query protocol's form fields."""
    body = responder.raw_body
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    if responder.headers.get("X-Amz-Target"):
        try:
            return dict(json.loads(text or "{}"))
        except ValueError:
            return {}
    fields = {k: v[0] for k, v in parse_qs(text).items()}
    fields.update({k: v[0] for k, v in responder.querystring.items() if v})
    return fields


def install() -> None:
    """Patch moto's access control in this process (the embedded AWS's own)."""
    if getattr(authorization.ActionAuthenticatorMixin, _MARK, False):
        return
    setattr(authorization.ActionAuthenticatorMixin, _MARK, True)

    original_key = access_control.create_access_key

    def create_access_key(
        account_id: str, partition: str, access_key_id: str, headers: dict[str, str]
    ) -> Any:
        if access_key_id == ADMIN_KEY:
            return _AdminKey(account_id)
        return original_key(account_id, partition, access_key_id, headers)

    access_control.create_access_key = create_access_key

    original_check = access_control.IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        self._mailroom_resource = resource
        original_check(self, resource)

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]

    def raise_denied(self: Any) -> None:
        if "X-Amz-Target" in self._headers or "x-amz-target" in self._headers:
            raise JsonRESTError("AccessDeniedException", _denied_message(self))
        raise _QueryDenied(_denied_message(self))

    def raise_s3_denied(self: Any) -> None:
        raise S3ClientError("AccessDenied", _denied_message(self))

    access_control.IAMRequest._raise_access_denied = raise_denied  # type: ignore[method-assign]
    access_control.S3IAMRequest._raise_access_denied = raise_s3_denied  # type: ignore[method-assign]

    original_normal = (
        authorization.ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    )

    def normal(self: Any, resource: str = "*") -> None:
        mixin = authorization.ActionAuthenticatorMixin
        authorization_header = self.headers.get("Authorization", "")
        scope = authorization_header.partition("Credential=")[2].partition(",")[0].split("/")
        if (
            mixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT
            or len(scope) < 4
            or scope[3] not in _RESOLVED
        ):
            original_normal(self, resource)
            return
        region, service = scope[2], scope[3]
        path = self.raw_path + (f"?{self.uri.partition('?')[2]}" if "?" in self.uri else "")
        for target in targets(service, self._get_action(), _params(self), region):
            request = access_control.IAMRequest(
                account_id=self.current_account,
                method=self.method,
                path=path,
                data=self.data,
                body=self.raw_body,
                headers=self.headers,
                action=target.action.split(":", 1)[1],
            )
            request.check_signature()
            request.check_action_permitted(target.resource)

    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal  # type: ignore[method-assign]
