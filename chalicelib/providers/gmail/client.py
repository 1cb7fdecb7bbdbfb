"""Gmail API client: ``users.messages.import`` by resumable media upload, ``rfc822msgid:`` search,
the mailbox's labels (``users.labels.list``).

googleapiclient and google.* are imported inside the methods that call Gmail, so nothing the
other functions import pays for them. googleapiclient builds the requests (static discovery,
``gmail.v1`` only); they travel over an injected ``requests.Session`` (``_SessionHttp``), which
lets tests and the local stand-in point the same code elsewhere. OAuth: one authorized-user
JSON per target mailbox in SSM (``gmail/<local>_at_<domain>``, as SSM names cannot hold "@");
access tokens are cached per container until shortly before they expire.

Errors (Gmail's "handle errors" guide): ``invalid_grant`` → permanent, re-authorize; 401 →
refresh once, then permanent; 403 ``userRateLimitExceeded``/``rateLimitExceeded`` and 429 →
transient; 400 "Invalid label: <id>" → permanent, naming the label (``GmailLabelNotFound``);
other 403 and 4xx → permanent; 5xx and timeouts → transient, and after the upload was sent
the import may have happened (``may_have_acted``).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from chalicelib.platform.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderPermanentError,
    transient_factory,
)
from chalicelib.platform.secrets import get_secrets
from chalicelib.platform.settings import Settings

PROVIDER = "gmail"
GOOGLE_API = "https://gmail.googleapis.com"
REAUTHORIZE = "Gmail authorization for this mailbox revoked or expired; re-authorize"
# Refresh this long before Google's expiry (google-auth uses 3 min 45 s).
EXPIRY_MARGIN_SECONDS = 300
_RATE_REASONS = {"userRateLimitExceeded", "rateLimitExceeded"}
# Gmail's message when a request names a label id the mailbox does not have.
_INVALID_LABEL = re.compile(r"^Invalid label: (?P<label>\S+)")


class GmailAuthRevoked(ProviderAuthError):
    """The refresh token is dead (``invalid_grant``): a person must re-authorize the mailbox."""


class GmailLabelNotFound(ProviderPermanentError):
    """Gmail refused a label id the mailbox does not have: the route names a wrong label."""

    def __init__(self, reason: str, *, label: str, **context: Any) -> None:
        super().__init__(reason, provider=PROVIDER, **context)
        self.label = label


def parameter_name(mailbox: str) -> str:
    """The SSM parameter (under the stage prefix) holding ``mailbox``'s OAuth client and token."""
    return "gmail/" + mailbox.strip().lower().replace("@", "_at_")


_transient = transient_factory(PROVIDER)


@dataclass(frozen=True)
class OAuthClient:
    """An authorized-user credential: OAuth client id/secret and the mailbox's refresh token."""

    client_id: str
    client_secret: str
    refresh_token: str

    @classmethod
    def from_json(cls, text: str) -> OAuthClient:
        try:
            info = json.loads(text)
            return cls(
                str(info["client_id"]), str(info["client_secret"]), str(info["refresh_token"])
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ProviderAuthError(
                "Gmail credential in SSM is not authorized-user JSON", provider=PROVIDER
            ) from err


class TokenCache:
    """Access tokens per mailbox, refreshed at the token endpoint only when near expiry."""

    def __init__(
        self,
        token_url: str,
        *,
        session: requests.Session,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = token_url
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}

    def token(self, mailbox: str, oauth: OAuthClient, *, force: bool = False) -> str:
        cached = self._tokens.get(mailbox)
        if not force and cached is not None and cached[1] > self._clock():
            return cached[0]
        token, lifetime = self._refresh(oauth)
        self._tokens[mailbox] = (token, self._clock() + lifetime - EXPIRY_MARGIN_SECONDS)
        return token

    def _refresh(self, oauth: OAuthClient) -> tuple[str, float]:
        try:
            response = self._session.post(
                self._url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": oauth.client_id,
                    "client_secret": oauth.client_secret,
                    "refresh_token": oauth.refresh_token,
                },
                timeout=self._timeout,
            )
        except requests.RequestException as err:
            raise _transient("token endpoint unreachable", acted=False) from err
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and body.get("access_token"):
            return str(body["access_token"]), float(body.get("expires_in", 3600))
        code = str(body.get("error", "")) if isinstance(body, dict) else ""
        context: dict[str, Any] = {"status_code": response.status_code, "error_code": code}
        if code == "invalid_grant":
            raise GmailAuthRevoked(REAUTHORIZE, provider=PROVIDER, **context)
        if response.status_code >= 500 or response.status_code in {408, 429}:
            raise _transient("token endpoint unavailable", acted=False, **context)
        raise ProviderAuthError(
            "token endpoint refused the OAuth client", provider=PROVIDER, **context
        )


class _SessionHttp:
    """The httplib2 interface googleapiclient calls, over a ``requests.Session``."""

    def __init__(self, session: requests.Session, api_url: str, timeout: float) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self.token = ""

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        redirections: int = 5,
        connection_type: Any = None,
    ) -> tuple[Any, bytes]:
        import httplib2

        if uri.startswith(GOOGLE_API):
            uri = self._api_url + uri[len(GOOGLE_API) :]
        if hasattr(body, "read"):  # a chunk of a resumable upload
            body = body.read()
        sent = {**(headers or {}), "authorization": f"Bearer {self.token}"}
        try:
            answer = self._session.request(
                method, uri, data=body, headers=sent, timeout=self._timeout
            )
        except requests.ConnectionError as err:
            if isinstance(err, requests.ConnectTimeout) or "refused" in str(err).lower():
                raise _transient("Gmail unreachable", acted=False) from err
            raise _transient("Gmail connection lost", acted=True) from err
        except requests.Timeout as err:
            raise _transient("Gmail did not answer in time", acted=True) from err
        except requests.RequestException as err:
            raise _transient("Gmail request failed", acted=True) from err
        info = {k.lower(): v for k, v in answer.headers.items()}
        info["status"] = str(answer.status_code)
        response = httplib2.Response(info)
        response.reason = answer.reason or ""
        return response, answer.content

    def close(self) -> None:
        """googleapiclient may close its transport; the session is shared, so nothing to do."""


class GmailClient:
    """One target mailbox: import messages and find one by its RFC Message-ID."""

    def __init__(
        self,
        mailbox: str,
        oauth: OAuthClient,
        *,
        tokens: TokenCache,
        session: requests.Session,
        api_url: str = GOOGLE_API,
        timeout: float = 60.0,
    ) -> None:
        self.mailbox = mailbox
        self.oauth = oauth
        self._tokens = tokens
        self._http = _SessionHttp(session, api_url, timeout)
        self._service: Any = None

    def import_message(
        self, raw: bytes, *, labels: tuple[str, ...], never_mark_spam: bool
    ) -> dict[str, str]:
        """``users.messages.import`` by resumable upload (any size up to Gmail's 150 MB)."""
        from googleapiclient.http import MediaIoBaseUpload

        def build(service: Any) -> Any:
            return (
                service.users()
                .messages()
                .import_(
                    userId=self.mailbox,
                    body={"labelIds": list(labels)},
                    media_body=MediaIoBaseUpload(
                        io.BytesIO(raw), mimetype="message/rfc822", resumable=True
                    ),
                    internalDateSource="dateHeader",
                    neverMarkSpam=never_mark_spam,
                    processForCalendar=False,
                )
            )

        answer = self._execute(build, acts=True)
        return {"gmail_id": str(answer.get("id", "")), "thread_id": str(answer.get("threadId", ""))}

    def find_by_message_id(self, rfc_message_id: str) -> str | None:
        """The Gmail id of a message with this Message-ID in the mailbox (spam and trash too)."""
        answer = self._execute(
            lambda service: (
                service.users()
                .messages()
                .list(userId=self.mailbox, q=f"rfc822msgid:{rfc_message_id}", includeSpamTrash=True)
            ),
            acts=False,
        )
        found = answer.get("messages") or []
        return str(found[0]["id"]) if found else None

    def labels(self) -> dict[str, str]:
        """The mailbox's labels, system and user: label id → name (``users.labels.list``)."""
        answer = self._execute(
            lambda service: service.users().labels().list(userId=self.mailbox), acts=False
        )
        return {str(x["id"]): str(x.get("name") or x["id"]) for x in answer.get("labels") or []}

    def _execute(self, build: Callable[[Any], Any], *, acts: bool) -> dict[str, Any]:
        """Run a request, refreshing the token once on 401; map Gmail's errors to ours."""
        from googleapiclient.errors import HttpError

        for attempt in (1, 2):
            self._http.token = self._tokens.token(self.mailbox, self.oauth, force=attempt == 2)
            try:
                return dict(build(self.service()).execute(num_retries=0))
            except HttpError as err:
                status = int(err.resp.status)
                if status == 401 and attempt == 1:
                    continue
                raise _classify(status, err.content, acts=acts) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def service(self) -> Any:
        if self._service is None:
            from googleapiclient.discovery import build

            self._service = build(
                "gmail", "v1", http=self._http, static_discovery=True, cache_discovery=False
            )
        return self._service


def _classify(status: int, content: bytes, *, acts: bool) -> ProviderError:
    reason = message = ""
    try:
        error = json.loads(content)["error"]
        reason = str((error.get("errors") or [{}])[0].get("reason") or error.get("status") or "")
        message = str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        pass
    context: dict[str, Any] = {"status_code": status, "error_code": reason or None}
    invalid_label = _INVALID_LABEL.match(message) if status == 400 else None
    if invalid_label is not None:
        label = invalid_label["label"].rstrip(".,")
        return GmailLabelNotFound(f"Gmail mailbox has no label {label}", label=label, **context)
    if status == 429 or (status == 403 and reason in _RATE_REASONS):
        return _transient("Gmail rate limit", acted=False, **context)
    if status == 401:
        return ProviderAuthError(
            "Gmail rejected a fresh access token (scope or consent missing); re-authorize",
            provider=PROVIDER,
            **context,
        )
    if status >= 500 or status == 408:
        # The request reached Google: an import may have been stored before the error.
        return _transient("Gmail unavailable", acted=acts, **context)
    return ProviderPermanentError(
        f"Gmail refused the request ({reason or status})", provider=PROVIDER, **context
    )


# 15,000 units per user per minute at 25 units per import: at most 10 imports/s per mailbox.
MIN_IMPORT_INTERVAL_SECONDS = 0.1


class GmailMailboxes:
    """One client per target mailbox (rebuilt when its authorization changes), a shared token
    cache, and per-mailbox pacing; kept for the container's life."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.session = session
        self.sleep = sleep
        self.tokens = TokenCache(
            settings.gmail_token_url, session=session, timeout=settings.http_timeout_seconds
        )
        self.clients: dict[str, GmailClient] = {}
        self.last_import: dict[str, float] = {}
        self.healthy: set[str] = set()  # mailboxes whose authorization worked since start

    def client(self, mailbox: str) -> GmailClient:
        oauth = OAuthClient.from_json(get_secrets().current(parameter_name(mailbox)))
        cached = self.clients.get(mailbox)
        if cached is None or cached.oauth != oauth:  # re-authorized since: use the new token
            cached = GmailClient(
                mailbox,
                oauth,
                tokens=self.tokens,
                session=self.session,
                api_url=self.settings.gmail_api_url,
                timeout=self.settings.gmail_timeout_seconds,
            )
            self.clients[mailbox] = cached
        return cached

    def pace(self, mailbox: str) -> None:
        waited = time.monotonic() - self.last_import.get(mailbox, 0.0)
        if waited < MIN_IMPORT_INTERVAL_SECONDS:
            self.sleep(MIN_IMPORT_INTERVAL_SECONDS - waited)  # pacing, not synchronisation
        self.last_import[mailbox] = time.monotonic()
