"""HTTP from the homeserver to application services: queries, third-party lookups, ping, transactions.

Every request carries `Authorization: Bearer <hs_token>`; with `use_appservice_legacy_authorization`
the token also travels as the deprecated `access_token` query parameter, as Synapse does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from appservices.metrics import AppServiceMetrics
from appservices.registration import AppServiceRegistration
from homeserver import jsonutil
from homeserver.errors import MatrixError

logger = logging.getLogger(__name__)

APP_PREFIX = "/_matrix/app/v1"
MAX_ERROR_BODY = 4096


class AppServiceClient:
    def __init__(self, metrics: AppServiceMetrics, *, legacy_authorization: bool = False,
                 timeout_s: float = 60.0, query_timeout_s: float = 10.0):
        self._metrics = metrics
        self._legacy_authorization = legacy_authorization
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._query_timeout = aiohttp.ClientTimeout(total=query_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(json_serialize=lambda v: jsonutil.encode(v).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _auth(self, registration: AppServiceRegistration,
              params: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        query = dict(params or {})
        if self._legacy_authorization:
            query["access_token"] = registration.hs_token
        return {"Authorization": f"Bearer {registration.hs_token}"}, query

    def _count(self, registration: AppServiceRegistration, kind: str, outcome: str) -> None:
        self._metrics.requests.labels(registration.id, kind, outcome).inc()

    async def _get_json(self, registration: AppServiceRegistration, kind: str, path: str,
                        params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed body or None); (0, None) when the service cannot be reached."""
        headers, query = self._auth(registration, params)
        try:
            async with self._http().get(f"{registration.url}{APP_PREFIX}{path}", headers=headers, params=query,
                                        timeout=self._query_timeout) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            logger.warning("%s query to application service %s failed: %s", kind, registration.id, e)
            self._count(registration, kind, "unreachable")
            return 0, None
        self._count(registration, kind, str(status))
        try:
            return status, jsonutil.decode(raw) if raw else None
        except jsonutil.JSONDecodeError:
            return status, None

    # --- queries -------------------------------------------------------------------------------
    async def query_user(self, registration: AppServiceRegistration, user_id: str) -> bool:
        """GET /users/{userId}: True when the service says it created the user."""
        if registration.url is None:
            return False
        status, _ = await self._get_json(registration, "user", f"/users/{quote(user_id, safe='')}")
        return status == 200

    async def query_alias(self, registration: AppServiceRegistration, alias: str) -> bool:
        """GET /rooms/{alias}: True when the service says it created the alias."""
        if registration.url is None:
            return False
        status, _ = await self._get_json(registration, "alias", f"/rooms/{quote(alias, safe='')}")
        return status == 200

    async def get_protocol(self, registration: AppServiceRegistration, protocol: str) -> dict[str, Any] | None:
        """GET /thirdparty/protocol/{protocol}: the protocol's metadata, or None."""
        if registration.url is None:
            return None
        status, body = await self._get_json(registration, "protocol",
                                            f"/thirdparty/protocol/{quote(protocol, safe='')}")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("instances", []), list):
            return None
        return body

    async def query_third_party(self, registration: AppServiceRegistration, kind: str, protocol: str | None,
                                fields: Mapping[str, str]) -> list[dict[str, Any]]:
        """GET /thirdparty/{user|location}[/{protocol}]: the well-formed results the service gave."""
        if registration.url is None:
            return []
        path = f"/thirdparty/{kind}" + (f"/{quote(protocol, safe='')}" if protocol is not None else "")
        status, body = await self._get_json(registration, kind, path, fields)
        if status != 200 or not isinstance(body, list):
            return []
        required = "userid" if kind == "user" else "alias"
        return [r for r in body if isinstance(r, dict) and isinstance(r.get(required), str)
                and isinstance(r.get("protocol"), str) and isinstance(r.get("fields"), dict)]

    # --- ping ----------------------------------------------------------------------------------
    async def ping(self, registration: AppServiceRegistration, transaction_id: str | None,
                   timeout_s: float | None = None) -> int:
        """POST /ping; the round trip in ms, or the spec's M_URL_NOT_SET / M_CONNECTION_* / M_BAD_STATUS."""
        if registration.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "The application service has no URL configured")
        headers, query = self._auth(registration)
        body = {} if transaction_id is None else {"transaction_id": transaction_id}
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        started = time.monotonic()
        try:
            async with self._http().post(f"{registration.url}{APP_PREFIX}/ping", json=body, headers=headers,
                                         params=query, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            self._count(registration, "ping", "timeout")
            raise MatrixError(504, "M_CONNECTION_TIMEOUT", "The application service did not answer in time") from None
        except (aiohttp.ClientError, OSError) as e:
            self._count(registration, "ping", "unreachable")
            raise MatrixError(502, "M_CONNECTION_FAILED",
                              f"Could not connect to the application service: {type(e).__name__}: {e}") from None
        self._count(registration, "ping", str(status))
        if not 200 <= status < 300:
            raise MatrixError(502, "M_BAD_STATUS", f"Ping returned status {status}", status=status,
                              body=raw[:MAX_ERROR_BODY].decode("utf-8", "replace"))
        # Rounded up: a loopback ping takes under a millisecond, and mautrix reads 0 as "no duration".
        return math.ceil((time.monotonic() - started) * 1000)

    # --- transactions --------------------------------------------------------------------------
    async def _put_transaction(self, registration: AppServiceRegistration, url: str,
                               body: Mapping[str, Any]) -> int:
        """The status the service answered, or 0 when it could not be reached."""
        headers, query = self._auth(registration)
        try:
            async with self._http().put(url, json=body, headers=headers, params=query,
                                        timeout=self._timeout) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            logger.warning("Could not reach application service %s at %s: %s", registration.id, url, e)
            return 0

    async def send_transaction(self, registration: AppServiceRegistration, txn_id: str,
                               body: Mapping[str, Any]) -> bool:
        """PUT /transactions/{txnId}; True when the service accepted it (2xx), False to retry later.

        A service that does not know the versioned route (404/405) gets the legacy unprefixed one,
        as the spec's legacy routes say; any other failure is retried on the versioned route.
        """
        if registration.url is None:
            return True  # a service without a URL receives nothing, by its own choice
        path = f"/transactions/{quote(txn_id, safe='')}"
        status = await self._put_transaction(registration, f"{registration.url}{APP_PREFIX}{path}", body)
        if status in (404, 405):
            status = await self._put_transaction(registration, f"{registration.url}{path}", body)
        labels = (registration.id,)
        if not 200 <= status < 300:
            if status:
                logger.warning("Application service %s refused transaction %s: HTTP %d",
                               registration.id, txn_id, status)
            self._metrics.transaction_failures.labels(*labels).inc()
            return False
        self._metrics.transactions_sent.labels(*labels).inc()
        self._metrics.events_sent.labels(*labels).inc(len(body.get("events", ())))
        ephemeral = body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", ()))
        to_device = body.get("to_device", body.get("de.sorunome.msc2409.to_device", ()))
        self._metrics.ephemeral_sent.labels(*labels).inc(len(ephemeral))
        self._metrics.to_device_sent.labels(*labels).inc(len(to_device))
        self._metrics.last_success.labels(*labels).set(time.time())
        return True
