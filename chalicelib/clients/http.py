"""The shared requests base of the provider clients: JSON headers, timeout, network errors.

Each provider client adds its own auth header and maps the answer's status and body;
what every provider shares (a timeout or a dropped connection is transient) lives here.
"""

from __future__ import annotations

from typing import Any

import requests

from chalicelib.errors import ProviderTransientError

JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


class JsonHttpClient:
    """A base URL, a reused ``requests.Session`` and a timeout; subclasses add auth."""

    provider = "http"

    def __init__(self, base_url: str, *, session: requests.Session | None, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        self._timeout = timeout

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The raw response; network failures become ``ProviderTransientError``."""
        try:
            return self._session.request(
                method,
                self._base_url + path,
                headers={**JSON_HEADERS, **self._auth_headers()},
                timeout=self._timeout,
                **kwargs,
            )
        except requests.Timeout as err:
            raise ProviderTransientError("request timed out", provider=self.provider) from err
        except requests.RequestException as err:
            raise ProviderTransientError("connection failed", provider=self.provider) from err
