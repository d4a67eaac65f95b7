"""The courier of `federation` outbound items: `PUT /_matrix/federation/v1/send/{txnId}`.

The outbound queue (homeserver/outbound/queue.py) hands us a destination's next transaction:
its ID (kept across retries and restarts, so a receiver that already processed it recognises
the re-send) and its items, at most 50 PDUs and 100 EDUs (`fits`). PDUs are read from storage
when sent, in the room version's format (no `event_id` from v3 on), redacted if a redaction
applied meanwhile; events purged meanwhile are left out.

Outcomes: a 2xx answer completes the transaction; errors it lists per PDU are logged (the
receiver judged those events; sending them again changes nothing). A destination our policy
refuses, or one that answers 400 or 413 (it will refuse the same transaction however often we
send it), drops the transaction. Anything else (unreachable, 5xx, 429, 401...) is retried with
the queue's per-destination backoff.

A destination that fails is retried with backoff; when it makes an authenticated request to us
meanwhile, it is up again, and server.py has the queue retry it at once (`should_wake`).

Catch-up: after failures, when more PDUs are waiting than one transaction holds, only the
newest queued PDU of each room is kept; receiving it, the destination fetches what it lacks
with /get_missing_events and /backfill (as Synapse's catch-up does), instead of replaying a long
outage event by event.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from federation.client import FederationClient, FederationDenied, FederationHttpError, quote_segment
from homeserver.clock import Clock
from homeserver.events.format import serialize_for_federation
from homeserver.outbound.queue import PermanentDeliveryError
from storage.stores.events import EventStore
from storage.stores.federation_outbound import FederationOutboundStore

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
# After failures, a backlog above this many PDUs is reduced to each room's newest.
CATCH_UP_THRESHOLD = MAX_PDUS
SEND_PATH = "/_matrix/federation/v1/send/"


class TransactionSender:
    """Outbound queue courier for the `federation` kind."""

    max_items = MAX_PDUS + MAX_EDUS

    def __init__(self, server_name: str, client: FederationClient, events: EventStore,
                 store: FederationOutboundStore, clock: Clock, *, catch_up_threshold: int = CATCH_UP_THRESHOLD,
                 registry: CollectorRegistry | None = None):
        self._server_name = server_name
        self._client = client
        self._events = events
        self._store = store
        self._clock = clock
        self._catch_up_threshold = catch_up_threshold
        self._metrics = _metrics(registry)
        # Destinations whose last attempt failed (in this process): worth waking when they call us.
        self._failing: set[str] = set()

    def should_wake(self, destination: str) -> bool:
        """Whether `destination` is backing off after a failed transaction; True once per failure
        (so a busy peer calling us often does not keep interrupting the retry it triggered)."""
        if destination in self._failing:
            self._failing.discard(destination)
            return True
        return False

    @staticmethod
    def fits(payloads: list[dict[str, Any]]) -> int:
        """How many of the leading queued items one transaction takes: up to 50 PDUs and 100 EDUs."""
        pdus = edus = 0
        for taken, payload in enumerate(payloads):
            if "pdu" in payload:
                pdus += 1
            else:
                edus += 1
            if pdus > MAX_PDUS or edus > MAX_EDUS:
                return taken
        return len(payloads)

    async def catch_up(self, destination: str) -> None:
        """The destination failed before: shrink a large backlog to each room's newest PDU."""
        dropped = await self._store.compact_backlog(destination, self._catch_up_threshold)
        if dropped:
            logger.info("catching up %s: sending each room's newest event instead of %d older ones "
                        "(it fetches them with /get_missing_events)", destination, dropped)
            if self._metrics is not None:
                self._metrics["caught_up"].labels(destination).inc(dropped)

    async def deliver(self, destination: str, txn_id: str, items: list[dict[str, Any]]) -> None:
        """Send one transaction (outbound queue courier)."""
        pdu_ids = [item["pdu"] for item in items if "pdu" in item]
        edus = [item["edu"] for item in items if "edu" in item]
        loaded = await self._events.get_events(pdu_ids)
        now = self._clock.time_ms()
        pdus = []
        for event_id in pdu_ids:
            event = loaded.get(event_id)
            if event is None:
                continue  # purged since it was queued
            redacted = bool(event.internal_metadata.get("redacted_by"))
            pdus.append(serialize_for_federation(event, now, redacted=redacted))
        if not pdus and not edus:
            return
        body = {"origin": self._server_name, "origin_server_ts": now, "pdus": pdus, "edus": edus}
        try:
            answer = await self._client.put_json(destination, SEND_PATH + quote_segment(txn_id), body)
        except FederationDenied as error:
            raise PermanentDeliveryError(str(error)) from None
        except FederationHttpError as error:
            if error.status in (400, 413):
                raise PermanentDeliveryError(str(error)) from None
            self._failing.add(destination)
            raise
        except Exception:
            self._failing.add(destination)
            raise
        self._failing.discard(destination)
        self._log_pdu_errors(destination, txn_id, answer)
        try:
            await self._store.record_delivered(destination, [event_id for event_id in pdu_ids if event_id in loaded])
        except Exception:  # only the admin API's bookkeeping; the transaction did get through
            logger.exception("recording what %s accepted failed", destination)

    def _log_pdu_errors(self, destination: str, txn_id: str, answer: Any) -> None:
        results = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            return
        for event_id, result in results.items():
            if isinstance(result, dict) and "error" in result:
                logger.warning("%s did not accept %s in transaction %s: %s", destination, event_id, txn_id,
                               result["error"])
                if self._metrics is not None:
                    self._metrics["pdu_errors"].labels(destination).inc()


def _metrics(registry: CollectorRegistry | None) -> dict[str, Counter] | None:
    if registry is None:
        return None
    existing = getattr(registry, "_federation_sender_metrics", None)
    if existing is None:
        existing = {
            "pdu_errors": Counter("federation_sent_pdu_errors", "PDUs a destination answered with an error",
                                  ("destination",), registry=registry),
            "caught_up": Counter("federation_catch_up_skipped_pdus",
                                 "Queued PDUs not sent after an outage (the destination fetches them)",
                                 ("destination",), registry=registry),
        }
        registry._federation_sender_metrics = existing  # type: ignore[attr-defined]
    return existing
