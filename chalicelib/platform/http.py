"""The shared requests base of the provider clients: JSON headers, timeout, network errors.

Each provider client names its own auth header and maps the answer's status and body;
what every provider shares lives here: a timeout or a dropped connection is transient, and
only a connection that was never made proves that the provider did not act.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from chalicelib.platform.errors import ProviderTransientError

JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


class JsonHttpClient:
    """A base URL, the provider's auth header, a reused ``requests.Session`` and a timeout."""

    provider = "http"

    def __init__(
        self,
        base_url: str,
        *,
        auth: Mapping[str, str],
        session: requests.Session | None,
        timeout: float,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {**JSON_HEADERS, **auth}
        self._session = session or requests.Session()
        self._timeout = timeout

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The raw response; network failures become ``ProviderTransientError``."""
        try:
            return self._session.request(
                method,
                self._base_url + path,
                headers=self._headers,
                timeout=self._timeout,
                **kwargs,
            )
        except requests.ConnectTimeout as err:
            raise ProviderTransientError("connection timed out", provider=self.provider) from err
        except requests.Timeout as err:
            # The request left and no answer came: the provider may have acted on it.
            raise ProviderTransientError(
                "request timed out", provider=self.provider, may_have_acted=True
            ) from err
        except requests.RequestException as err:
            raise ProviderTransientError(
                "connection failed", provider=self.provider, may_have_acted=not _refused(err)
            ) from err


def _refused(err: BaseException) -> bool:
    """Whether no connection was ever made (so no request can have reached the provider)."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, NewConnectionError | NameResolutionError):
            return True
        if isinstance(getattr(seen, "reason", None), NewConnectionError | NameResolutionError):
            return True
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nested or seen.__cause__ or seen.__context__
    return False
