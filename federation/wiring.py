"""Builds the federation components from the configuration and the homeserver's services.

homeserver/server.py creates the `FederationTransport` first (the signed client, keys and request
authentication need no service) and hands the services what they ask other servers through
(`remote_queries`, `remote_membership`, `backfiller`); then one `Federation` for the inbound
routes, the read-only endpoints and outbound transactions: server.py registers its routes on
listeners serving the `federation` resource, gives `sender` to the outbound queue as the courier of
`federation` items, subscribes `handoff.stage` to persisted events, and stops it all on shutdown.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from signedjson.types import SigningKey

from federation.auth import FederationAuthenticator
from federation.backfill import Backfiller
from federation.client import FederationClient
from federation.device_edus import DeviceEdus
from federation.device_http import FederationDeviceHandlers
from federation.device_lists_outbound import DeviceListSender
from federation.ephemeral_edus import EphemeralEduReceiver
from federation.ephemeral_outbound import EphemeralEduSender
from federation.hierarchy_http import FederationHierarchyHandlers
from federation.http import FederationQueryHandlers, KeyHandlers
from federation.inbound import InboundTransactions
from federation.ingest import EventIngestor
from federation.joins import RemoteMembership
from federation.keys import KeyFetcher, LocalKeys, parse_trusted_key_servers
from federation.media import FederationMediaFetcher
from federation.media_http import FederationMediaHandlers
from federation.membership_resident import ResidentMembership, SendEvent, UserExists
from federation.outbound import FederationHandoff
from federation.partial_state import PartialStateResync
from federation.policy import ServerPolicy
from federation.reading import FederationReader
from federation.reading_http import FederationReadingHandlers
from federation.remote_queries import RemoteQueries
from federation.remote_spaces import RemoteSpaceQueries
from federation.sender import TransactionSender
from federation.server_acl import ServerAcls
from homeserver.accounts.profiles import ProfileService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.directory.aliases import AliasService
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.directory.public_rooms import RoomDirectoryService
from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.remote_devices import RemoteDeviceLists
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.receipts import ReceiptService
from homeserver.ephemeral.typing import TypingService
from homeserver.ip_blocklist import LOOPBACK_NETWORKS, PRIVATE_NETWORKS, IpNetwork, parse_networks
from homeserver.media.service import MediaService
from homeserver.rooms.erasure import ErasedUsers
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.persister import EventPersister
from homeserver.signing_keys import load_old_verify_keys
from homeserver.streams.bus import StreamBus
from storage.stores.e2ee import E2eeKeyStore
from storage.stores.events import EventStore
from storage.stores.federation_inbound import ReceivedTransactionStore
from storage.stores.federation_outbound import FederationOutboundStore
from storage.stores.partial_state import PartialStateStore
from storage.stores.server_keys import ServerKeyStore
from storage.stores.stages import StagePositionStore
from storage.stores.timeline import TimelineStore


def federation_ip_allowlist(section: dict[str, Any]) -> list[IpNetwork]:
    """The ranges federation may reach beyond public addresses, from the `federation` config."""
    entries = list(section["ip_range_allowlist"])
    if section["allow_loopback"]:
        entries.extend(LOOPBACK_NETWORKS)
    if section["allow_private_ranges"]:
        entries.extend(PRIVATE_NETWORKS)
    return parse_networks(entries)


class FederationTransport:
    """Outbound signed requests, server keys and inbound request authentication."""

    def __init__(self, config: Config, signing_key: SigningKey, db: Any, clock: Clock):
        section = config.section("federation")
        self.server_name = config.server_name
        self.signing_key = signing_key
        self.clock = clock
        self.enabled: bool = section["enabled"]
        self.policy = ServerPolicy(section["server_allowlist"], section["server_denylist"], enabled=self.enabled)
        self.local_keys = LocalKeys(config.server_name, signing_key,
                                    load_old_verify_keys(section["old_signing_keys_path"]), clock,
                                    section["key_validity_period_ms"])
        self.client = FederationClient(
            config.server_name, signing_key, clock, policy=self.policy,
            ip_allowlist=federation_ip_allowlist(section), ca_bundle_path=section["ca_bundle_path"],
            timeout_s=float(section["request_timeout_s"]), max_response_bytes=section["max_response_bytes"],
        )
        self.key_store = ServerKeyStore(db)
        self.key_fetcher = KeyFetcher(self.local_keys, self.key_store, clock, self.client.key_request,
                                      parse_trusted_key_servers(section["trusted_key_servers"]))
        self.authenticator = FederationAuthenticator(config.server_name, self.key_fetcher, clock, self.policy)
        # The outbound queue's first retry interval for `federation` items (it doubles per failure
        # up to `outbound.max_retry_interval_s`).
        self.min_retry_interval_ms: int = section["min_retry_interval_ms"]
        # What local clients ask of other servers (profiles, aliases, room directories); None when off.
        self.remote_queries: RemoteQueries | None = RemoteQueries(self.client, clock) if self.enabled else None
        # How the media service fetches mxc:// content of other servers; None when off.
        self.remote_media: FederationMediaFetcher | None = FederationMediaFetcher(self.client) if self.enabled else None
        # How the space hierarchy learns about rooms only other servers are in; None when off.
        self.remote_spaces: RemoteSpaceQueries | None = (
            RemoteSpaceQueries(config.server_name, self.client, clock) if self.enabled else None)
        self._ingestor: EventIngestor | None = None
        # Rooms joined with partial state (faster joins), and the task that completes their state.
        self.partial_state_store = PartialStateStore(db)
        self.faster_joins: bool = section["faster_joins"]
        self.faster_joins_resync_delay_s: float = section["faster_joins_resync_delay_ms"] / 1000
        self.resync: PartialStateResync | None = None

    def remote_membership(self, events: EventStore, persister: EventPersister, heads: RoomHeads, bus: StreamBus
                          ) -> RemoteMembership | None:
        """Joins, leaves, knocks and invites across servers for the rooms service; None when off."""
        if self.remote_queries is None:
            return None
        ingestor = self.ingestor(events, heads, persister)
        if self.faster_joins:
            self.resync = PartialStateResync(self.server_name, self.client, self.key_fetcher, events, persister, heads,
                                             self.partial_state_store, bus, self.clock, ingestor.room_lock,
                                             start_delay_s=self.faster_joins_resync_delay_s)
        return RemoteMembership(self.server_name, self.signing_key, self.client, self.key_fetcher,
                                self.remote_queries, events, persister, heads, ingestor, self.clock,
                                partial_state=self.partial_state_store, resync=self.resync)

    def backfiller(self, events: EventStore, persister: EventPersister, heads: RoomHeads) -> Backfiller | None:
        """History from other servers when a local client pages past ours; None when off."""
        if not self.enabled:
            return None
        return Backfiller(self.server_name, self.client, self.key_fetcher, events, persister,
                          self.ingestor(events, heads, persister), self.clock, partial_state=self.partial_state_store)

    def ingestor(self, events: EventStore, heads: RoomHeads, persister: EventPersister) -> EventIngestor:
        """The one EventIngestor (its room locks order every remote event of a room, joins included)."""
        if self._ingestor is None:
            self._ingestor = EventIngestor(self.server_name, events, heads, persister, self.key_fetcher,
                                           self.client, self.clock, partial_state=self.partial_state_store)
        return self._ingestor

    async def start(self) -> None:
        """Take up the rooms whose full state a restart interrupted."""
        if self.resync is not None:
            await self.resync.resume()

    async def stop_resync(self) -> None:
        if self.resync is not None:
            await self.resync.stop()

    async def stop(self) -> None:
        await self.stop_resync()
        await self.client.close()


class Federation:
    def __init__(self, transport: FederationTransport, config: Config, db: Any, profiles: ProfileService,
                 aliases: AliasService, directory: RoomDirectoryService, media: MediaService,
                 hierarchy: SpaceHierarchyService, *, events: EventStore,
                 timeline: TimelineStore, positions: StagePositionStore, bus: StreamBus,
                 keys: KeysService, to_device: ToDeviceService, remote_devices: RemoteDeviceLists,
                 e2ee: E2eeKeyStore, heads: RoomHeads, persister: EventPersister,
                 received_txns: ReceivedTransactionStore, user_exists: UserExists, send_event: SendEvent,
                 typing: TypingService, receipts: ReceiptService, presence: PresenceService,
                 erased_users: ErasedUsers | None = None, registry: CollectorRegistry | None = None):
        """Federation's own composition root: everything server-server, given the room pipeline (inbound
        /send and its EDUs, the resident membership endpoints, invites) and the ephemeral services whose
        updates go out as EDUs."""
        clock = transport.clock
        self.transport = transport
        self.server_name = transport.server_name
        self.signing_key = transport.signing_key
        self.clock = transport.clock
        self.enabled = transport.enabled
        self.policy = transport.policy
        self.local_keys = transport.local_keys
        self.client = transport.client
        self.key_store = transport.key_store
        self.key_fetcher = transport.key_fetcher
        self.authenticator = transport.authenticator
        self.min_retry_interval_ms = transport.min_retry_interval_ms
        self.key_handlers = KeyHandlers(self.local_keys, self.key_fetcher)
        self.query_handlers = FederationQueryHandlers(config.server_name, self.authenticator, profiles, aliases,
                                                      directory)
        outbound_store = FederationOutboundStore(db)
        # Devices and end-to-end encryption: our users' device lists and to-device messages out,
        # other servers' device EDUs in, and the /user/devices and /user/keys endpoints.
        self.device_lists_sender = DeviceListSender(config.server_name, e2ee, outbound_store, positions, bus, clock,
                                                    self.policy, enabled=self.enabled,
                                                    partial_state=transport.partial_state_store)
        # Outbound transactions: the hand-off stage queues our events (and, after our user's join,
        # their device list for servers new to them), the courier sends them.
        self.handoff = FederationHandoff(config.server_name, outbound_store, events, positions, bus, clock,
                                         self.policy, enabled=self.enabled, registry=registry,
                                         partial_state=transport.partial_state_store,
                                         join_edus=self.device_lists_sender.join_edus)
        self.sender = TransactionSender(config.server_name, self.client, events, outbound_store, clock,
                                        registry=registry)
        self.device_edus = DeviceEdus(config.server_name, to_device, remote_devices)
        self.acls = ServerAcls(events)
        self.reader = FederationReader(config.server_name, events, timeline, self.acls, clock,
                                       erased_users=erased_users, partial_state=transport.partial_state_store)
        self.reading_handlers = FederationReadingHandlers(self.authenticator, self.reader)
        self.media_handlers = FederationMediaHandlers(config.server_name, self.authenticator, media)
        self.hierarchy_handlers = FederationHierarchyHandlers(self.authenticator, hierarchy)
        # The transport's one ingestor: the joining side takes its room locks too.
        self.ingestor = self.transport.ingestor(events, heads, persister)
        self.authenticator.add_acl_check(self.acls.check_request)
        ephemeral = EphemeralEduReceiver(self.server_name, events, self.acls, typing, receipts, presence)
        # Inbound EDUs: edu_type -> handler.
        self.inbound = InboundTransactions(self.ingestor, received_txns, self.acls, self.clock,
                                           edu_handlers={**self.device_edus.handlers(), **ephemeral.handlers()})
        self.device_handlers = FederationDeviceHandlers(self.server_name, self.authenticator, keys, user_exists)
        # Outbound EDUs: server.py subscribes this to the typing, receipt, presence and event updates.
        self.ephemeral_sender = EphemeralEduSender(self.server_name, events, self.handoff.queue_edus,
                                                   receipts.get_read_receipts, presence.presence_events,
                                                   presence.local_users_not_offline, self.clock,
                                                   partial_state=self.transport.partial_state_store)
        self.membership = ResidentMembership(self.server_name, self.signing_key, events, self.ingestor, self.acls,
                                             self.key_fetcher, self.clock, user_exists, send_event,
                                             self.transport.partial_state_store)

    def register_routes(self, app: web.Application) -> None:
        if not self.enabled:
            return
        self.key_handlers.register_routes(app)
        self.query_handlers.register_routes(app)
        self.inbound.register_routes(app, self.authenticator)
        self.membership.register_routes(app, self.authenticator)
        self.device_handlers.register_routes(app)
        self.reading_handlers.register_routes(app)
        self.media_handlers.register_routes(app)
        self.hierarchy_handlers.register_routes(app)

    async def start(self) -> None:
        if self.enabled:
            await self.ephemeral_sender.start()

    async def stop(self) -> None:
        await self.ephemeral_sender.stop()
        await self.transport.stop()
