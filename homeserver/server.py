"""The composition root: builds every service with explicit dependencies and serves the listeners.

Nothing else in the code base constructs services; handlers and services receive
their collaborators from here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from appservices.client import AppServiceClient
from appservices.delivery import AppServiceDelivery
from appservices.http import AppServiceHandlers
from appservices.metrics import AppServiceMetrics
from appservices.registration import load_registrations
from appservices.registry import AppServiceRegistry
from appservices.service import AppServices
from appservices.transactions import TransactionSender
from federation.wiring import Federation, FederationTransport
from homeserver.accounts.access_tokens import AuthService
from homeserver.accounts.account_data import AccountDataService
from homeserver.accounts.account_management import AccountDeactivation, AccountService
from homeserver.accounts.capabilities import build_capabilities
from homeserver.accounts.devices import DeviceService
from homeserver.accounts.email_validation import EmailValidationService
from homeserver.accounts.identity import IdentityServerClient
from homeserver.accounts.login import LoginService
from homeserver.accounts.mailer import Mailer
from homeserver.accounts.openid import OpenIdService
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.profiles import ProfileService
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.sessions import SessionService
from homeserver.accounts.uia import PASSWORD, REGISTRATION_TOKEN, UserInteractiveAuth
from homeserver.accounts.user_filters import FilterService
from homeserver.accounts.whois import WhoisService
from homeserver.admin.consent import ConsentService
from homeserver.admin.erasure import ERASE_USER, UserErasureService
from homeserver.admin.federation import AdminFederationService
from homeserver.admin.login_audit import LoginAuditService
from homeserver.admin.media import AdminMediaService
from homeserver.admin.metrics import ServerStateCollector
from homeserver.admin.moderation import Moderation
from homeserver.admin.redact import REDACT_ALL, UserRedactionService
from homeserver.admin.rooms import DELETE_ROOM, PURGE_HISTORY, AdminRoomService
from homeserver.admin.server import AdminServerService
from homeserver.admin.server_notices import ServerNoticeService
from homeserver.admin.tasks import AdminTaskRunner
from homeserver.admin.user_data import UserEventsService
from homeserver.admin.users import AdminUserService
from homeserver.clock import Clock
from homeserver.config import Config, ListenerConfig
from homeserver.directory.aliases import AliasService
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.directory.public_rooms import RoomDirectoryService
from homeserver.directory.search import SearchService
from homeserver.directory.user_directory import UserDirectoryService
from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.device_lists import DeviceListService
from homeserver.e2ee.key_backup import KeyBackupService
from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.remote_devices import RemoteDeviceLists
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.receipts import ReceiptService
from homeserver.ephemeral.typing import TypingService
from homeserver.http.admin_common import AdminAuthenticator
from homeserver.http.admin_federation import AdminFederationHandlers
from homeserver.http.admin_media import AdminMediaHandlers
from homeserver.http.admin_privacy import PrivacyAdminHandlers
from homeserver.http.admin_rooms import AdminRoomHandlers
from homeserver.http.admin_server import AdminServerHandlers, ScheduledTaskHandlers
from homeserver.http.admin_users import AdminUserHandlers, UserRedactionHandlers
from homeserver.http.app import MatrixAppRunner, build_app
from homeserver.http.client_account import AccountHandlers
from homeserver.http.client_account_data import AccountDataHandlers
from homeserver.http.client_admin import ClientAdminHandlers
from homeserver.http.client_capabilities import CapabilitiesHandlers
from homeserver.http.client_devices import DeviceHandlers
from homeserver.http.client_directory import DirectoryHandlers
from homeserver.http.client_ephemeral import EphemeralHandlers
from homeserver.http.client_filters import FilterHandlers
from homeserver.http.client_hierarchy import HierarchyHandlers
from homeserver.http.client_history import HistoryHandlers
from homeserver.http.client_keys import KeysHandlers
from homeserver.http.client_legacy import LegacyHandlers
from homeserver.http.client_openid import OpenIdHandlers
from homeserver.http.client_presence import PresenceHandlers
from homeserver.http.client_profile import ProfileHandlers
from homeserver.http.client_public_rooms import PublicRoomHandlers
from homeserver.http.client_push_rules import PushRuleHandlers
from homeserver.http.client_pushers import PusherHandlers
from homeserver.http.client_relations import RelationHandlers
from homeserver.http.client_reports import ReportHandlers
from homeserver.http.client_room_keys import RoomKeysHandlers
from homeserver.http.client_room_summary import RoomSummaryHandlers
from homeserver.http.client_rooms import RoomHandlers
from homeserver.http.client_search import SearchHandlers
from homeserver.http.client_session import AdminRegisterHandlers, SessionHandlers
from homeserver.http.client_sliding_sync import SlidingSyncHandlers
from homeserver.http.client_sync import SyncHandlers
from homeserver.http.client_to_device import ToDeviceHandlers
from homeserver.http.client_unconfigured import UnconfiguredServiceHandlers
from homeserver.http.client_user_directory import UserDirectoryHandlers
from homeserver.http.discovery import DiscoveryHandlers
from homeserver.http.federation_third_party import ThirdPartyBindHandlers
from homeserver.http.media import MediaHandlers
from homeserver.http.metrics import HttpMetrics
from homeserver.http.request_auth import RequestAuthenticator
from homeserver.media.filestore import MediaFileStore
from homeserver.media.service import MediaService
from homeserver.outbound.queue import OutboundQueue
from homeserver.push.notifications import NotificationService
from homeserver.push.push_rules import PushRulesService
from homeserver.push.pushers import PusherService
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.history import HistoryVisibilityFilter, RoomHistory
from homeserver.rooms.legacy import LegacyRoomViews
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.partial_state import PartialStateRooms
from homeserver.rooms.persister import EventPersister
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.redaction import RedactionService
from homeserver.rooms.relations import RelationsService
from homeserver.rooms.reports import ReportService
from homeserver.rooms.sender import RoomEventSender
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.rooms.third_party_invites import ThirdPartyInviter
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.signing_keys import load_or_create_signing_key
from homeserver.streams.bus import StreamBus
from homeserver.streams.notifier import Notifier
from homeserver.streams.recent import RecentEvents
from homeserver.streams.sources import EphemeralSource, TopLevelSource
from homeserver.streams.updates import (
    AccountDataChanged,
    DeviceCreated,
    DeviceListChanged,
    DeviceRenamed,
    DevicesDeleted,
    EventPersisted,
    OneTimeKeysChanged,
    OutboundItemsQueued,
    PartialStateRoomCompleted,
    PresenceChanged,
    ProfileChanged,
    PushRulesChanged,
    ReadReceiptStored,
    RemoteToDeviceQueued,
    RoomPurged,
    RoomSharingChanged,
    RoomUpgraded,
    ToDeviceQueued,
    TypingChanged,
)
from homeserver.sync.handler import SyncService
from homeserver.sync.sliding import SlidingSyncService
from storage.engine import create_database
from storage.stores.account_data import AccountDataStore
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore
from storage.stores.aliases import AliasStore
from storage.stores.appservice_queue import APPSERVICE_KIND, AppServiceQueueStore
from storage.stores.consent import ConsentStore
from storage.stores.deactivation import DeactivationStore
from storage.stores.directory import DirectoryStore
from storage.stores.e2ee import E2eeKeyStore
from storage.stores.events import EventStore
from storage.stores.federation_inbound import ReceivedTransactionStore
from storage.stores.federation_outbound import FEDERATION_KIND, FederationOutboundStore
from storage.stores.filters import FilterStore
from storage.stores.identity import IdentityBindingStore
from storage.stores.key_backup import KeyBackupStore
from storage.stores.login_audit import LoginAuditStore
from storage.stores.media import MediaStore
from storage.stores.notifications import NotificationStore
from storage.stores.outbound import OutboundStore
from storage.stores.presence import PresenceStore
from storage.stores.profiles import ProfileStore
from storage.stores.purge import PurgeStore
from storage.stores.push_rules import PushRuleStore
from storage.stores.pushers import PUSHER_KIND, PusherStore
from storage.stores.receipts import ReceiptStore
from storage.stores.relations import RelationStore
from storage.stores.remote_devices import RemoteDeviceStore
from storage.stores.reports import ReportStore
from storage.stores.search import SearchStore
from storage.stores.sliding_sync import SlidingSyncStore
from storage.stores.stages import StagePositionStore
from storage.stores.sync import SyncStore
from storage.stores.threepid_validation import ThreepidValidationStore
from storage.stores.timeline import TimelineStore
from storage.stores.to_device import ToDeviceStore
from storage.stores.user_events import UserEventStore

logger = logging.getLogger(__name__)

# The longest a background service may take to stop before shutdown goes on without it.
STOP_TIMEOUT_S = 30.0


class ListenerBindError(Exception):
    """A configured listener could not bind its address; the message names the listener."""


class HomeServer:
    """One homeserver process: database, services, and an aiohttp app per listener."""

    def __init__(self, config: Config):
        self.config = config
        self.metrics = HttpMetrics()
        self.db: Any = None
        self.signing_key: Any = None
        self._runners: list[web.AppRunner] = []
        self._background: list[Any] = []  # services with start()/stop(), stopped in reverse order
        # (listener, host, bound port) once started; port 0 in config means "any free port".
        self.bound_listeners: list[tuple[ListenerConfig, str, int]] = []

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        self.signing_key = load_or_create_signing_key(self.config.signing_key_path)
        # Registration files are checked before anything starts: a broken bridge config stops start-up.
        app_service_registrations = load_registrations(self.config.app_service_config_files,
                                                       self.config.server_name)
        self.db = await create_database(self.config.database)
        self._build(app_service_registrations)
        self._background.append(self.app_services)
        await self._start_background()
        try:
            await self.app_services.start()
            for listener in self.config.listeners:
                await self._start_listener(listener)
        except BaseException:
            await self.stop()
            raise
        for listener, host, port in self.bound_listeners:
            logger.info("Listening on %s:%d for %s", host, port, ", ".join(listener.resources))

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish, then close storage."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        for service in reversed(self._background):
            try:
                await asyncio.wait_for(service.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                logger.error("%s did not stop within %.0f s; shutting down without it", type(service).__name__,
                             STOP_TIMEOUT_S)
        self._background.clear()
        if self.db is not None:
            try:
                await asyncio.wait_for(self.db.close(), STOP_TIMEOUT_S)
            except TimeoutError:
                logger.error("the database did not close within %.0f s", STOP_TIMEOUT_S)
            self.db = None

    def base_url(self, resource: str = "client") -> str:
        for listener, host, port in self.bound_listeners:
            if resource in listener.resources:
                scheme = "https" if listener.tls else "http"
                shown = f"[{host}]" if ":" in host else host
                return f"{scheme}://{shown}:{port}"
        raise LookupError(f"no listener serves {resource!r}")

    # --- wiring: stores, services, stream consumers, HTTP handlers, in that order ------------------
    def _build(self, app_service_registrations: list[Any]) -> None:
        """Wire everything, top to bottom. Each step only uses what the steps before it built."""
        self.clock = Clock()
        self._build_stores()
        self.bus = StreamBus()
        self.notifier = Notifier(self.metrics.registry)
        self._build_account_services(app_service_registrations)
        self._build_room_services()
        self._build_ephemeral_and_e2ee_services()
        self._build_sync_services()
        self._build_federation()
        self._build_admin_services()
        self._build_outbound_delivery()
        self._subscribe_consumers()
        self._build_handlers()

    def _build_stores(self) -> None:
        """One store per table family; SQL lives only in them."""
        db = self.db
        self.account_store = AccountStore(db)
        self.admin_store = AdminStore(db)
        self.profile_store = ProfileStore(db)
        self.account_data_store = AccountDataStore(db)
        self.filter_store = FilterStore(db)
        self.push_rule_store = PushRuleStore(db)
        self.pusher_store = PusherStore(db)
        self.media_store = MediaStore(db)
        self.event_store = EventStore(db)
        self.timeline_store = TimelineStore(db)
        self.relation_store = RelationStore(db)
        self.sync_store = SyncStore(db)
        self.sliding_sync_store = SlidingSyncStore(db)
        self.deactivation_store = DeactivationStore(db)
        self.purge_store = PurgeStore(db)
        self.alias_store = AliasStore(db)
        self.directory_store = DirectoryStore(db)
        self.search_store = SearchStore(db)
        self.notification_store = NotificationStore(db)
        self.receipt_store = ReceiptStore(db)
        self.presence_store = PresenceStore(db)
        self.e2ee_store = E2eeKeyStore(db)
        self.remote_device_store = RemoteDeviceStore(db)
        self.to_device_store = ToDeviceStore(db)
        self.key_backup_store = KeyBackupStore(db)
        self.report_store = ReportStore(db)
        self.login_audit_store = LoginAuditStore(db)
        self.consent_store = ConsentStore(db)
        self.user_event_store = UserEventStore(db)
        self.threepid_validation_store = ThreepidValidationStore(db)
        self.identity_binding_store = IdentityBindingStore(db)
        self.received_txn_store = ReceivedTransactionStore(db)
        self.federation_outbound_store = FederationOutboundStore(db)
        self.app_service_queue_store = AppServiceQueueStore(db)
        self.outbound_store = OutboundStore(db)
        self.stage_positions = StagePositionStore(db)

    def _build_account_services(self, app_service_registrations: list[Any]) -> None:
        """Accounts, sessions and the application services whose namespaces they respect."""
        config, clock = self.config, self.clock
        sessions_config = config.section("sessions")
        # The login audit log hears of logins, registrations and token sightings from the services below.
        self.login_audit = LoginAuditService(config.server_name, self.login_audit_store, self.account_store, clock,
                                             max_age_days=config.section("admin")["login_audit_max_age_days"])
        self.auth = AuthService(self.account_store, clock, on_sightings=[self.login_audit.on_sightings])
        self.uia = UserInteractiveAuth(self.account_store, clock)
        self.devices = DeviceService(self.account_store, self.auth, self.uia, self.bus, clock,
                                     last_seen_max_age_days=sessions_config["last_seen_max_age_days"])
        self.sessions = SessionService(
            self.account_store, self.auth, self.devices, self.bus, clock,
            refreshable_access_token_lifetime_ms=sessions_config["refreshable_access_token_lifetime_ms"],
            refresh_token_lifetime_ms=sessions_config["refresh_token_lifetime_ms"],
            login_token_lifetime_ms=sessions_config["login_token_lifetime_ms"],
        )
        # Application services: as_token requests, ghost users, namespaces, queries and ping.
        self.app_service_metrics = AppServiceMetrics.for_registry(self.metrics.registry)
        self.app_service_client = AppServiceClient(
            self.app_service_metrics, legacy_authorization=config.raw["use_appservice_legacy_authorization"])
        app_services = self.app_services = AppServices(
            config.server_name, AppServiceRegistry(app_service_registrations), self.app_service_client,
            self.app_service_metrics, self.account_store, self.sessions, clock, self.event_store, self.alias_store)
        self.ratelimiter = RateLimiter(clock, config.rate_limits, enabled=config.rate_limits_enabled,
                                       exemptions=[app_services.is_rate_limit_exempt])
        passwords = self.passwords = PasswordHasher(config.passwords["bcrypt_rounds"], config.passwords["pepper"])
        self.registration = RegistrationService(
            config.server_name, self.account_store, self.sessions, self.uia, passwords, clock,
            enabled=config.registration["enabled"], require_token=config.registration["require_token"],
            shared_secret=config.registration["shared_secret"], allow_guests=config.registration["allow_guests"],
            auth=self.auth, ratelimiter=self.ratelimiter,
            user_id_checks=[app_services.check_user_id_for_registration],
            on_session=[self.login_audit.on_registration])
        self.login = LoginService(config.server_name, self.account_store, self.sessions, passwords,
                                  self.ratelimiter, self.uia,
                                  login_via_existing_session=sessions_config["login_via_existing_session"],
                                  on_login=[self.login_audit.on_login])
        self.uia.register_stage(PASSWORD, self.login.check_password_stage)
        self.uia.register_stage(REGISTRATION_TOKEN, self.registration.check_registration_token_stage)
        self.openid = OpenIdService(config.server_name, self.account_store, clock)
        self.whois = WhoisService(self.account_store, self.auth, login_audit=self.login_audit.all_entries)
        # Federation's transport first: services that ask other servers get what they ask through.
        self.federation_transport = FederationTransport(config, self.signing_key, self.db, clock)
        remote_queries = self.federation_transport.remote_queries
        self.profiles = ProfileService(config.server_name, self.profile_store, self.bus, remote=remote_queries,
                                       unknown_user_resolvers=[app_services.resolve_unknown_user])
        self.account_data = AccountDataService(self.account_data_store, self.bus)
        self.filters = FilterService(self.filter_store)
        self.push_rules = PushRulesService(self.push_rule_store, self.bus)
        self.media = MediaService(config.server_name, self.media_store, MediaFileStore(config.media["store_path"]),
                                  clock, self.ratelimiter, config.media,
                                  remote=self.federation_transport.remote_media)
        # What the admin API's flags and the privacy policy mean for every send and request.
        self.moderation = Moderation(config.server_name, self.admin_store)
        consent_config = config.section("consent")
        self.consent = ConsentService(
            config.server_name, self.consent_store, self.account_store, self.event_store, self.auth, clock,
            block_events=consent_config["block_events"], exempt_users=frozenset(consent_config["exempt_users"]),
            is_app_service_user=lambda user_id: bool(app_services.registry.by_sender(user_id)
                                                      or app_services.registry.interested_in_user(user_id)),
            is_app_service_bot=lambda user_id: bool(app_services.registry.by_sender(user_id)))

    def _build_room_services(self) -> None:
        """Rooms: events are created by the sender and written by the persister (group commit)."""
        config, clock, bus = self.config, self.clock, self.bus
        transport, app_services = self.federation_transport, self.app_services
        remote_queries = transport.remote_queries
        get_profile = self.profile_store.get_profile
        self.room_heads = RoomHeads(self.event_store)
        self.recent_events = RecentEvents()
        self.persister = EventPersister(self.event_store, self.room_heads, self.notifier, bus,
                                        registry=self.metrics.registry, recent=self.recent_events)
        self.alias_service = AliasService(config.server_name, self.alias_store, self.event_store, clock,
                                          self.auth.is_server_admin, remote=remote_queries,
                                          create_checks=[app_services.check_alias_creation],
                                          unknown_alias_resolvers=[app_services.resolve_unknown_alias])
        self.event_sender = RoomEventSender(
            config.server_name, self.signing_key, self.event_store, self.room_heads, self.persister, clock,
            send_checks=[self.alias_service.check_canonical_alias, self.moderation.check_not_suspended,
                         self.moderation.check_room_not_blocked, self.consent.check_consent])
        self.membership = MembershipService(
            config.server_name, self.event_sender, self.event_store, self.alias_store, get_profile,
            remote=transport.remote_membership(self.event_store, self.persister, self.room_heads, bus),
            unknown_id_resolvers=[app_services.resolve_unknown_id])
        self.room_creator = RoomCreator(config.server_name, self.event_sender, self.alias_store, clock,
                                        get_profile, self.membership.invite, config.default_room_version,
                                        alias_checks=[app_services.check_room_alias_name])
        # Rooms joined with partial state: what waits for their full member list.
        self.partial_state_rooms = PartialStateRooms(transport.partial_state_store, self.notifier)
        self.event_serializer = ClientEventSerializer(self.event_store, clock)
        # Events of users erased at deactivation are served redacted to readers who were not in the room.
        erased_users = self.deactivation_store.get_erased_users
        self.room_reader = RoomReader(self.event_store, self.event_serializer, erased_users,
                                      wait_for_full_state=self.partial_state_rooms.wait_for_full_state)
        self.redactions = RedactionService(self.event_sender, self.event_store, clock,
                                           retention_days=config.section("rooms")["redaction_retention_days"])
        self.history_visibility = HistoryVisibilityFilter(self.event_store, self.timeline_store, erased_users)
        self.room_history = RoomHistory(
            self.event_store, self.timeline_store, self.event_serializer, self.history_visibility,
            self.account_data_store.get_global,
            backfill=transport.backfiller(self.event_store, self.persister, self.room_heads))
        self.relations = RelationsService(self.event_store, self.relation_store, self.room_history,
                                          self.history_visibility, self.event_serializer)
        # The serializer bundles aggregations from the relations service, which serializes through it.
        self.event_serializer.add_unsigned_hook(self.relations.bundled_aggregations)
        self.room_upgrader = RoomUpgrader(self.event_sender, self.event_store, self.alias_store, bus, clock,
                                          get_profile)
        self.reports = ReportService(self.report_store, self.event_store, self.account_store, self.room_reader,
                                     clock)
        # Directories and search.
        self.room_directory = RoomDirectoryService(config.server_name, self.directory_store, self.event_store,
                                                   self.alias_service.may_manage_directory, remote=remote_queries)
        self.user_directory = UserDirectoryService(
            self.directory_store, search_all_users=config.section("user_directory")["search_all_users"])
        self.hierarchy = SpaceHierarchyService(self.event_store, remote=transport.remote_spaces)
        self.search = SearchService(self.event_store, self.search_store, self.timeline_store, self.room_history,
                                    self.event_serializer, self.stage_positions, registry=self.metrics.registry)

    def _build_ephemeral_and_e2ee_services(self) -> None:
        """Ephemeral data, push, presence and end-to-end encryption."""
        config, clock, bus, notifier = self.config, self.clock, self.bus, self.notifier
        registry = self.metrics.registry
        remote_queries = self.federation_transport.remote_queries
        self.typing = TypingService(self.event_store, notifier, bus)
        self.receipts = ReceiptService(self.receipt_store, self.event_store, self.room_reader, self.account_data,
                                       notifier, bus, clock)
        self.notifications = NotificationService(config.server_name, self.event_store, self.notification_store,
                                                 self.push_rules, self.event_serializer, notifier,
                                                 self.stage_positions, clock, registry=registry)
        self.pushers = PusherService(self.pusher_store, self.notifications, self.notification_store,
                                     self.event_store, self.stage_positions, bus, clock, registry=registry)
        self.presence = PresenceService(config.server_name, self.presence_store, self.event_store, notifier,
                                        clock, enabled=config.section("presence")["enabled"], bus=bus)
        self.device_lists = DeviceListService(self.e2ee_store, self.event_store, notifier, bus)
        # Users of other servers: their device lists cached, their servers asked (None when federation is off).
        self.remote_devices = RemoteDeviceLists(config.server_name, self.remote_device_store, self.e2ee_store,
                                                notifier, clock, remote=remote_queries, bus=bus)
        self.keys = KeysService(config.server_name, self.e2ee_store, self.device_lists, clock, bus,
                                remote_devices=self.remote_devices, remote=remote_queries)
        self.cross_signing = CrossSigningService(config.server_name, self.e2ee_store, self.device_lists, self.uia,
                                                 self.account_store, clock)
        self.to_device = ToDeviceService(config.server_name, self.to_device_store, notifier, clock, bus)
        self.key_backup = KeyBackupService(self.key_backup_store)

    def _build_sync_services(self) -> None:
        """/sync, sliding sync and the legacy views: read-only consumers of every stream."""
        clock, notifier = self.clock, self.notifier
        typing = EphemeralSource(self.typing.stream_name, self.typing.current_position, self.typing.events_for_rooms)
        receipts = EphemeralSource(self.receipts.stream_name, self.receipts.current_position,
                                   self.receipts.events_for_rooms)
        presence = TopLevelSource(self.presence.stream_name, self.presence.current_position,
                                  self.presence.sync_sections)
        device_lists = TopLevelSource(self.device_lists.stream_name, self.device_lists.current_position,
                                      self.device_lists.sync_sections, every_sync=True)
        to_device = TopLevelSource(self.to_device.stream_name, self.to_device.current_position,
                                   self.to_device.sync_sections, every_sync=True)
        # Typing and receipts are ephemeral sources; presence, device lists (with key counts, every sync)
        # and to-device messages top-level ones; push adds unread counts.
        self.sync = SyncService(self.event_store, self.sync_store, self.event_serializer, self.account_data_store,
                                self.push_rules, self.filters, notifier, clock,
                                erased_users=self.deactivation_store.get_erased_users,
                                partial_state=self.federation_transport.partial_state_store,
                                presence_tracker=self.presence.syncing,
                                presence_lookup=self.presence.presence_events,
                                gapless_window_s=self.config.section("sync")["gapless_window_ms"] / 1000,
                                recent=self.recent_events)
        for ephemeral in (typing, receipts):
            self.sync.add_ephemeral_source(ephemeral)
        self.sync.add_room_fields_provider(self.notifications.room_fields)
        for top_level in (presence, device_lists, to_device):
            self.sync.add_top_level_source(top_level)
        # The legacy /events and /initialSync views, built from the sync and history services.
        self.legacy_views = LegacyRoomViews(self.event_store, self.timeline_store, self.room_history,
                                            self.history_visibility, self.event_serializer, self.account_data_store,
                                            notifier, self.sync.current_token, self.receipts.events_for_rooms,
                                            self.directory_store.get_room_visibility,
                                            self.sync_store.get_rooms_with_new_events, presence, [typing, receipts])
        # Simplified sliding sync reads the same streams as /sync, through the same sources.
        self.sliding_sync = SlidingSyncService(
            self.sync, self.event_store, self.sync_store, self.sliding_sync_store, self.event_serializer,
            self.account_data_store, self.push_rules, notifier, typing=typing, receipts=receipts,
            to_device=dataclasses.replace(to_device, every_sync=False),
            device_lists=dataclasses.replace(device_lists, every_sync=False),
            room_fields=self.notifications.room_fields, clock=clock)

    def _build_federation(self) -> None:
        """Server keys, X-Matrix authentication, the read-only endpoints, inbound and outbound transactions."""
        self.federation = Federation(
            self.federation_transport, self.config, self.db, self.profiles, self.alias_service,
            self.room_directory, self.media, self.hierarchy, events=self.event_store, timeline=self.timeline_store,
            positions=self.stage_positions, bus=self.bus, keys=self.keys, to_device=self.to_device,
            remote_devices=self.remote_devices, e2ee=self.e2ee_store, heads=self.room_heads,
            persister=self.persister, received_txns=self.received_txn_store, user_exists=self.account_store.get_user,
            send_event=self.event_sender.send, typing=self.typing, receipts=self.receipts, presence=self.presence,
            erased_users=self.deactivation_store.get_erased_users, registry=self.metrics.registry)

    def _build_admin_services(self) -> None:
        """Account management and the admin API (Synapse's `/_synapse/admin`, the spec's account
        moderation, our privacy namespace). Deactivation reaches into rooms, pushers and presence."""
        config, clock = self.config, self.clock
        self.deactivation = AccountDeactivation(
            self.account_store, self.deactivation_store, self.auth, self.devices,
            leave_all_rooms=self.membership.leave_all_rooms, remove_pushers=self.pushers.remove_all_for_user,
            clear_presence=self.presence.clear, forget_cached_events=self.event_store.forget_cached_events)
        identity_config = config.section("identity")
        self.identity_client = IdentityServerClient(
            config.server_name, self.signing_key, scheme=identity_config["scheme"],
            ip_range_allowlist=identity_config["ip_range_allowlist"],
            trusted_servers=identity_config["trusted_servers"])
        self.email_validation = EmailValidationService(
            self.threepid_validation_store, self.admin_store, Mailer(config.section("email")), clock,
            public_baseurl=config.public_baseurl,
            token_lifetime_ms=config.section("email")["validation_token_lifetime_ms"])
        self.accounts = AccountService(self.account_store, self.auth, self.uia, self.devices, self.passwords,
                                       self.deactivation, identity=self.identity_client,
                                       bindings=self.identity_binding_store, email_validation=self.email_validation,
                                       threepids=self.admin_store)
        self.third_party_invites = ThirdPartyInviter(self.identity_client, self.membership, self.event_sender,
                                                     self.event_store, self.profile_store.get_profile)
        self.admin_users = AdminUserService(
            config.server_name, self.account_store, self.admin_store, self.auth, self.accounts, self.devices,
            self.sessions, self.registration, self.profiles, self.passwords, self.event_store,
            self.pusher_store, self.account_data, self.ratelimiter, self.moderation, clock,
            consent=self.consent_store)
        self.server_notices = ServerNoticeService(
            config.server_name, config.section("server_notices"), self.account_store, self.admin_store,
            self.event_store, self.room_creator, self.membership, self.event_sender, self.account_data, clock)
        self.admin_server = AdminServerService(self.account_store, self.report_store, self.event_store, clock)
        self.admin_tasks = AdminTaskRunner(self.admin_store, clock)
        self.admin_media = AdminMediaService(config.server_name, self.media, self.media_store, self.admin_store,
                                             self.account_store, self.event_store)
        self.admin_rooms = AdminRoomService(
            config.server_name, self.event_store, self.timeline_store, self.admin_store, self.purge_store,
            self.account_store, self.alias_store, self.event_sender, self.membership, self.room_creator,
            self.event_serializer, self.admin_tasks, clock,
            delete_unreferenced_media=self.admin_media.delete_unreferenced, bus=self.bus)
        self.user_redactions = UserRedactionService(config.server_name, self.event_store, self.admin_store,
                                                    self.redactions, self.admin_tasks)
        self.user_events = UserEventsService(self.user_event_store, self.event_store)
        self.user_erasure = UserErasureService(
            config.server_name, self.account_store, self.admin_store, self.event_store, self.user_event_store,
            self.redactions, self.accounts, self.account_data, self.pusher_store, self.media, self.media_store,
            self.login_audit, self.consent, self.threepid_validation_store, self.admin_tasks)
        for task, run in ((DELETE_ROOM, self.admin_rooms.run_delete_room),
                          (PURGE_HISTORY, self.admin_rooms.run_purge_history),
                          (REDACT_ALL, self.user_redactions.run), (ERASE_USER, self.user_erasure.run)):
            self.admin_tasks.register(task, run)
        self.admin_federation = AdminFederationService(
            config.server_name, self.outbound_store, self.federation_outbound_store,
            lambda kind, destination: self.outbound.retry_now(kind, destination, forget_failures=True))
        server_state = ServerStateCollector(self.db, self.admin_store, clock,
                                            [self.event_store.cache_stats, self.auth.cache_stats,
                                             self.push_rules.cache_stats])
        server_state.register(self.metrics.registry)
        self.metrics.set_scrape_callback("server_state", server_state.refresh)

    def _build_outbound_delivery(self) -> None:
        """One durable queue, a courier per kind: pushers, federation transactions, appservice transactions."""
        outbound_config = self.config.section("outbound")
        self.app_service_delivery = AppServiceDelivery(
            self.app_services, TransactionSender(self.app_service_client, self.app_service_metrics),
            self.app_service_queue_store, self.event_store, self.stage_positions, self.event_serializer,
            self.receipt_store, self.bus, self.clock, keys=self.e2ee_store, registry=self.metrics.registry)
        self.outbound = OutboundQueue(
            self.outbound_store, self.clock,
            {PUSHER_KIND: self.pushers, FEDERATION_KIND: self.federation.sender,
             APPSERVICE_KIND: self.app_service_delivery},
            min_retry_s=outbound_config["min_retry_interval_s"],
            max_retry_s=outbound_config["max_retry_interval_s"],
            min_retry_s_by_kind={FEDERATION_KIND: self.federation.min_retry_interval_ms / 1000},
            registry=self.metrics.registry)

    def _subscribe_consumers(self) -> None:
        """Stream consumers: who hears what, in this order."""
        bus, outbound = self.bus, self.outbound
        for stage in (self.notifications.stage, self.pushers.stage, self.search.stage, self.federation.handoff.stage):
            bus.subscribe(EventPersisted, stage.on_event_persisted)
        bus.subscribe(EventPersisted, self.typing.on_event_persisted)
        bus.subscribe(PartialStateRoomCompleted, self.partial_state_rooms.on_completed)
        for moves_everyones_membership in (PartialStateRoomCompleted, RoomPurged):
            bus.subscribe(moves_everyones_membership, lambda _: self.recent_events.memberships_moved_everywhere())
        bus.subscribe(RoomPurged, self.sliding_sync.on_room_purged)
        bus.subscribe(EventPersisted, self.sliding_sync.on_event_persisted)
        bus.subscribe(EventPersisted, self.presence.on_event_persisted)
        bus.subscribe(EventPersisted, self.device_lists.on_event_persisted)
        bus.subscribe(EventPersisted, self.membership.on_event_persisted)
        bus.subscribe(ProfileChanged, self.membership.on_profile_changed)
        bus.subscribe(AccountDataChanged, self.sync.on_account_data_changed)
        bus.subscribe(AccountDataChanged, self.notifications.on_account_data_changed)
        bus.subscribe(PushRulesChanged, self.sync.on_push_rules_changed)
        bus.subscribe(PushRulesChanged, self.notifications.on_push_rules_changed)
        bus.subscribe(ReadReceiptStored, self.notifications.on_receipt)
        if self.federation.enabled:
            ephemeral_edus = self.federation.ephemeral_sender
            bus.subscribe(TypingChanged, ephemeral_edus.on_typing)
            bus.subscribe(ReadReceiptStored, ephemeral_edus.on_receipt)
            bus.subscribe(PresenceChanged, ephemeral_edus.on_presence)
            bus.subscribe(EventPersisted, ephemeral_edus.on_event_persisted)
        for on_upgraded in (self.room_directory.on_room_upgraded, self.account_data.on_room_upgraded,
                            self.push_rules.on_room_upgraded):
            bus.subscribe(RoomUpgraded, on_upgraded)
        bus.subscribe(DeviceCreated, self.keys.on_device_created)
        bus.subscribe(DeviceRenamed, self.keys.on_device_renamed)
        bus.subscribe(DevicesDeleted, self.keys.on_devices_deleted)
        bus.subscribe(DevicesDeleted, self.pushers.on_devices_deleted)
        bus.subscribe(DeviceListChanged, self.federation.device_lists_sender.on_device_list_changed)
        bus.subscribe(RemoteToDeviceQueued, self.federation.device_lists_sender.on_remote_to_device)
        bus.subscribe(PartialStateRoomCompleted, self.federation.device_lists_sender.on_partial_state_completed)
        bus.subscribe(RoomSharingChanged, self.remote_devices.on_room_sharing_changed)
        delivery = self.app_service_delivery
        bus.subscribe(EventPersisted, delivery.stage.on_event_persisted)
        bus.subscribe(ReadReceiptStored, delivery.on_receipt)
        bus.subscribe(TypingChanged, delivery.on_typing)
        bus.subscribe(PresenceChanged, delivery.on_presence)
        bus.subscribe(ToDeviceQueued, delivery.on_to_device)
        bus.subscribe(DeviceListChanged, delivery.on_device_list_changed)
        bus.subscribe(RoomSharingChanged, delivery.on_room_sharing_changed)
        bus.subscribe(OneTimeKeysChanged, delivery.on_one_time_keys_changed)
        bus.subscribe(OutboundItemsQueued, lambda update: outbound.poke(update.kind, update.destination,
                                                                         update.count))

        # A server that calls us is back: retry what waits for it now. An appservice that answers a
        # ping likewise.
        async def retry_server_that_called_us(origin: str) -> None:
            if self.federation.sender.should_wake(origin):
                await outbound.retry_now(FEDERATION_KIND, origin)

        self.federation.authenticator.add_origin_listener(retry_server_that_called_us)
        self.app_services.add_ping_success_callback(
            lambda registration: outbound.retry_now(APPSERVICE_KIND, registration.id))

    def _build_handlers(self) -> None:
        """HTTP handlers: parse, call a service, render."""
        config = self.config
        authenticate = self.authenticate = RequestAuthenticator(self.auth,
                                                                app_services=self.app_services.requester_for_token)
        self.discovery = DiscoveryHandlers(config)
        self.session_handlers = SessionHandlers(self.registration, self.login, self.sessions, authenticate,
                                                self.ratelimiter, app_service_register=self.app_services.register_user,
                                                app_service_login=self.app_services.login)
        self.admin_register_handlers = AdminRegisterHandlers(self.registration)
        self.openid_handlers = OpenIdHandlers(self.openid, authenticate)
        self.profile_handlers = ProfileHandlers(self.profiles, authenticate)
        self.account_data_handlers = AccountDataHandlers(self.account_data, authenticate)
        self.filter_handlers = FilterHandlers(self.filters, authenticate)
        self.capabilities_handlers = CapabilitiesHandlers(
            build_capabilities(config.default_room_version, get_login_token=self.login.get_token_enabled),
            authenticate, self.auth.is_server_admin)
        self.device_handlers = DeviceHandlers(self.devices, authenticate)
        self.account_handlers = AccountHandlers(self.accounts, authenticate)
        self.push_rule_handlers = PushRuleHandlers(self.push_rules, authenticate)
        self.media_handlers = MediaHandlers(self.media, authenticate)
        self.history_handlers = HistoryHandlers(self.room_history, authenticate)
        self.relation_handlers = RelationHandlers(self.relations, authenticate)
        self.room_handlers = RoomHandlers(self.room_creator, self.membership, self.event_sender, self.room_reader,
                                          self.redactions, self.room_upgrader, authenticate, self.ratelimiter,
                                          third_party=self.third_party_invites,
                                          is_shadow_banned=self.moderation.is_shadow_banned)
        self.directory_handlers = DirectoryHandlers(self.alias_service, authenticate)
        self.report_handlers = ReportHandlers(self.reports, authenticate, self.ratelimiter)
        self.client_admin_handlers = ClientAdminHandlers(self.whois, authenticate)
        self.unconfigured_handlers = UnconfiguredServiceHandlers(authenticate)
        self.public_room_handlers = PublicRoomHandlers(self.room_directory, authenticate)
        self.user_directory_handlers = UserDirectoryHandlers(self.user_directory, authenticate)
        self.hierarchy_handlers = HierarchyHandlers(self.hierarchy, authenticate)
        self.room_summary_handlers = RoomSummaryHandlers(self.hierarchy, self.alias_service, self.room_reader,
                                                         authenticate)
        self.legacy_handlers = LegacyHandlers(self.legacy_views, authenticate)
        self.search_handlers = SearchHandlers(self.search, authenticate)
        self.ephemeral_handlers = EphemeralHandlers(self.typing, self.receipts, authenticate,
                                                    is_shadow_banned=self.moderation.is_shadow_banned)
        self.sync_handlers = SyncHandlers(self.sync, authenticate)
        self.sliding_sync_handlers = SlidingSyncHandlers(self.sliding_sync, authenticate)
        self.pusher_handlers = PusherHandlers(self.pushers, self.notifications, authenticate)
        self.presence_handlers = PresenceHandlers(self.presence, authenticate)
        self.keys_handlers = KeysHandlers(self.keys, self.cross_signing, authenticate)
        self.to_device_handlers = ToDeviceHandlers(self.to_device, authenticate)
        self.room_keys_handlers = RoomKeysHandlers(self.key_backup, authenticate)
        self.app_service_handlers = AppServiceHandlers(self.app_services, authenticate)
        # The admin API.
        admin_auth = AdminAuthenticator(authenticate, self.auth)
        self.admin_user_handlers = AdminUserHandlers(self.admin_users, self.whois, self.login_audit, admin_auth,
                                                     authenticate)
        self.admin_server_handlers = AdminServerHandlers(self.admin_server, self.server_notices, admin_auth)
        self.scheduled_task_handlers = ScheduledTaskHandlers(self.admin_tasks, admin_auth)
        self.admin_room_handlers = AdminRoomHandlers(self.admin_rooms, admin_auth)
        self.user_redaction_handlers = UserRedactionHandlers(self.user_redactions, admin_auth)
        self.admin_media_handlers = AdminMediaHandlers(self.admin_media, admin_auth)
        self.privacy_admin_handlers = PrivacyAdminHandlers(self.user_events, self.login_audit, self.user_erasure,
                                                           self.consent, admin_auth)
        self.admin_federation_handlers = AdminFederationHandlers(self.admin_federation, admin_auth)

    async def _start_background(self) -> None:
        """Start the background work, in dependency order; `stop` stops it in reverse."""
        upkeep = self.db.table_upkeep() if self.db is not None else None
        if upkeep is not None:
            await upkeep.start()
            self._background.append(upkeep)
        for service in (self.auth, self.devices, self.media, self.redactions, self.presence, self.sliding_sync):
            service.start()
            self._background.append(service)
        self._background.append(self.typing)
        # Stopped after the outbound queue, whose federation courier uses its client.
        await self.federation.start()
        self._background.append(self.federation)
        await self.outbound.start()
        self._background.append(self.outbound)
        for stage in (self.notifications.stage, self.pushers.stage, self.search.stage,
                      self.app_service_delivery.stage, self.federation.handoff.stage,
                      self.federation.device_lists_sender):
            await stage.start()
            self._background.append(stage)
        for service in (self.moderation, self.admin_users, self.login_audit, self.consent, self.admin_tasks):
            await service.start()
            self._background.append(service)
        self.persister.start()
        self._background.append(self.persister)
        # Rooms whose full state a restart interrupted; stopped before the persister it writes through.
        await self.federation_transport.start()
        self._background.append(_Closing(self.federation_transport.stop_resync))
        self._background.append(_Closing(self.pushers.close))
        self._background.append(self.identity_client)

    def _build_listener_app(self, listener: ListenerConfig) -> web.Application:
        serves_matrix = bool({"client", "federation", "admin"} & set(listener.resources))
        app = build_app(
            max_body_size=self.config.max_request_body_size,
            metrics=self.metrics if serves_matrix else None,
            cors=serves_matrix,
            x_forwarded=bool(self.config.raw["http"].get("x_forwarded")),
        )
        if "client" in listener.resources:
            self.discovery.register_client(app)
            self.session_handlers.register_routes(app)
            self.profile_handlers.register_routes(app)
            self.account_data_handlers.register_routes(app)
            self.filter_handlers.register_routes(app)
            self.capabilities_handlers.register_routes(app)
            self.device_handlers.register_routes(app)
            self.account_handlers.register_routes(app)
            self.push_rule_handlers.register_routes(app)
            self.media_handlers.register_routes(app)
            self.room_handlers.register_routes(app)
            self.history_handlers.register_routes(app)
            self.relation_handlers.register_routes(app)
            self.directory_handlers.register_routes(app)
            self.report_handlers.register_routes(app)
            self.client_admin_handlers.register_routes(app)
            self.unconfigured_handlers.register_routes(app)
            self.public_room_handlers.register_routes(app)
            self.user_directory_handlers.register_routes(app)
            self.hierarchy_handlers.register_routes(app)
            self.room_summary_handlers.register_routes(app)
            self.search_handlers.register_routes(app)
            self.presence_handlers.register_routes(app)
            self.keys_handlers.register_routes(app)
            self.to_device_handlers.register_routes(app)
            self.room_keys_handlers.register_routes(app)
            self.ephemeral_handlers.register_routes(app)
            self.sync_handlers.register_routes(app)
            self.sliding_sync_handlers.register_routes(app)
            self.legacy_handlers.register_routes(app)
            self.pusher_handlers.register_routes(app)
            self.openid_handlers.register_routes(app)
            self.app_service_handlers.register_routes(app)
            self.admin_user_handlers.register_client_routes(app)
        if "federation" in listener.resources:
            self.discovery.register_federation(app)
            self.openid_handlers.register_federation(app)
            ThirdPartyBindHandlers(self.third_party_invites).register_federation(app)
            self.federation.register_routes(app)
        if "admin" in listener.resources:
            self.admin_register_handlers.register_routes(app)
            self.admin_user_handlers.register_routes(app)
            self.admin_server_handlers.register_routes(app)
            self.scheduled_task_handlers.register_routes(app)
            self.admin_room_handlers.register_routes(app)
            self.admin_media_handlers.register_routes(app)
            self.user_redaction_handlers.register_routes(app)
            self.privacy_admin_handlers.register_routes(app)
            self.admin_federation_handlers.register_routes(app)
        if "metrics" in listener.resources:
            self.metrics.register_routes(app)
        return app

    async def _start_listener(self, listener: ListenerConfig) -> None:
        app = self._build_listener_app(listener)
        runner = MatrixAppRunner(app, access_log=None, shutdown_timeout=self.config.shutdown_timeout,
                                 handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        ssl_context = None
        if listener.tls:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(listener.tls.certificate_path, listener.tls.private_key_path)
        site = web.TCPSite(runner, listener.host, listener.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as e:
            raise ListenerBindError(
                f"cannot listen on {listener.host}:{listener.port} (the {', '.join(listener.resources)} listener):"
                f" {e.strerror or e}") from None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.bound_listeners.append((listener, listener.host, port))


class _Closing:
    """Something with only an async close, stopped with the background services."""

    def __init__(self, close: Callable[[], Awaitable[None]]):
        self._close = close

    async def stop(self) -> None:
        await self._close()


async def serve_forever(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    server = HomeServer(config)
    os.makedirs(config.data_dir, exist_ok=True)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("Shutting down: finishing in-flight requests")
    await server.stop()
