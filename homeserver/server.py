"""The composition root: builds every service with explicit dependencies and serves the listeners.

Nothing else in the code base constructs services; handlers and services receive
their collaborators from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from typing import Any

from aiohttp import web

from homeserver.accounts.account_data import AccountDataService
from homeserver.accounts.account_management import AccountService
from homeserver.accounts.auth import AuthService
from homeserver.accounts.capabilities import build_capabilities
from homeserver.accounts.devices import DeviceService
from homeserver.accounts.filters import FilterService
from homeserver.accounts.login import LoginService
from homeserver.accounts.passwords import PasswordHasher
from homeserver.accounts.profiles import ProfileService
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.sessions import SessionService
from homeserver.accounts.uia import UserInteractiveAuth
from homeserver.accounts.whois import WhoisService
from homeserver.admin.login_audit import LoginAuditService
from homeserver.admin.media import AdminMediaService
from homeserver.admin.redact import UserRedactionService
from homeserver.admin.rooms import AdminRoomService
from homeserver.admin.server import AdminServerService
from homeserver.admin.server_notices import ServerNoticeService
from homeserver.admin.tasks import AdminTaskRunner
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
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.receipts import ReceiptService
from homeserver.ephemeral.typing import TypingService
from homeserver.http.admin_common import AdminAuthenticator
from homeserver.http.admin_media import AdminMediaHandlers
from homeserver.http.admin_rooms import AdminRoomHandlers
from homeserver.http.admin_server import AdminServerHandlers
from homeserver.http.admin_users import AdminUserHandlers, UserRedactionHandlers
from homeserver.http.app import build_app
from homeserver.http.auth import RequestAuthenticator
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
from homeserver.http.client_presence import PresenceHandlers
from homeserver.http.client_profile import ProfileHandlers
from homeserver.http.client_public_rooms import PublicRoomHandlers
from homeserver.http.client_push_rules import PushRuleHandlers
from homeserver.http.client_pushers import PusherHandlers
from homeserver.http.client_relations import RelationHandlers
from homeserver.http.client_reports import ReportHandlers
from homeserver.http.client_room_keys import RoomKeysHandlers
from homeserver.http.client_rooms import RoomHandlers
from homeserver.http.client_search import SearchHandlers
from homeserver.http.client_session import AdminRegisterHandlers, SessionHandlers
from homeserver.http.client_sync import SyncHandlers
from homeserver.http.client_to_device import ToDeviceHandlers
from homeserver.http.client_unconfigured import UnconfiguredServiceHandlers
from homeserver.http.client_user_directory import UserDirectoryHandlers
from homeserver.http.discovery import DiscoveryHandlers
from homeserver.http.media import MediaHandlers
from homeserver.http.metrics import HttpMetrics
from homeserver.media.filestore import MediaFileStore
from homeserver.media.service import MediaService
from homeserver.push.notifications import NotificationService
from homeserver.push.push_rules import PushRulesService
from homeserver.push.pushers import PusherService
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.history import HistoryVisibilityFilter, RoomHistory
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.redaction import RedactionService
from homeserver.rooms.relations import RelationsService
from homeserver.rooms.reports import ReportService
from homeserver.rooms.sender import RoomEventSender
from homeserver.rooms.serialize import ClientEventSerializer
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.signing_keys import load_or_create_signing_key
from homeserver.sync.extensions import EphemeralSource, TopLevelSource
from homeserver.sync.handler import SyncService
from homeserver.sync.notifier import Notifier
from storage.engine import create_database
from storage.stores.account_data import AccountDataStore
from storage.stores.accounts import AccountStore
from storage.stores.admin import AdminStore
from storage.stores.aliases import AliasStore
from storage.stores.directory import DirectoryStore
from storage.stores.e2ee import E2eeKeyStore
from storage.stores.events import EventStore
from storage.stores.filters import FilterStore
from storage.stores.key_backup import KeyBackupStore
from storage.stores.login_audit import LoginAuditStore
from storage.stores.media import MediaStore
from storage.stores.notifications import NotificationStore
from storage.stores.presence import PresenceStore
from storage.stores.profiles import ProfileStore
from storage.stores.purge import PurgeStore
from storage.stores.push_rules import PushRuleStore
from storage.stores.pushers import PusherStore
from storage.stores.receipts import ReceiptStore
from storage.stores.relations import RelationStore
from storage.stores.reports import ReportStore
from storage.stores.search import SearchStore
from storage.stores.sync import SyncStore
from storage.stores.timeline import TimelineStore
from storage.stores.to_device import ToDeviceStore

logger = logging.getLogger(__name__)


class HomeServer:
    """One homeserver process: database, services, and an aiohttp app per listener."""

    def __init__(self, config: Config):
        self.config = config
        self.metrics = HttpMetrics()
        self.db: Any = None
        self.signing_key: Any = None
        self._runners: list[web.AppRunner] = []
        self._background: list[Any] = []  # services with start()/stop(), stopped in reverse order
        self._admin_starts: list[Any] = []  # services with async start()/stop(), started before listening
        # (listener, host, bound port) once started; port 0 in config means "any free port".
        self.bound_listeners: list[tuple[ListenerConfig, str, int]] = []

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        self.signing_key = load_or_create_signing_key(self.config.signing_key_path)
        self.db = await create_database(self.config.database)
        self._build_services()
        for service in self._admin_starts:
            await service.start()
            self._background.append(service)
        self._admin_starts.clear()  # a restart builds (and starts) fresh ones
        try:
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
            await service.stop()
        self._background.clear()
        if self.db is not None:
            await self.db.close()
            self.db = None

    def base_url(self, resource: str = "client") -> str:
        for listener, host, port in self.bound_listeners:
            if resource in listener.resources:
                scheme = "https" if listener.tls else "http"
                shown = f"[{host}]" if ":" in host else host
                return f"{scheme}://{shown}:{port}"
        raise LookupError(f"no listener serves {resource!r}")

    # --- wiring -----------------------------------------------------------------
    def _build_services(self) -> None:
        config = self.config
        clock = Clock()
        sessions_config = config.section("sessions")
        self.clock = clock
        self.ratelimiter = RateLimiter(clock, config.rate_limits, enabled=config.rate_limits_enabled)
        self.account_store = AccountStore(self.db)
        self.auth = AuthService(self.account_store, clock)
        self.auth.start()
        self._background.append(self.auth)
        passwords = PasswordHasher(config.passwords["bcrypt_rounds"], config.passwords["pepper"])
        self.passwords = passwords
        self.uia = UserInteractiveAuth(self.account_store, clock)
        self.sessions = SessionService(
            self.account_store, self.auth, clock,
            refreshable_access_token_lifetime_ms=sessions_config["refreshable_access_token_lifetime_ms"],
            refresh_token_lifetime_ms=sessions_config["refresh_token_lifetime_ms"],
            login_token_lifetime_ms=sessions_config["login_token_lifetime_ms"],
        )
        self.registration = RegistrationService(
            config.server_name, self.account_store, self.sessions, self.uia, passwords, clock,
            enabled=config.registration["enabled"], require_token=config.registration["require_token"],
            shared_secret=config.registration["shared_secret"], allow_guests=config.registration["allow_guests"],
        )
        self.login = LoginService(config.server_name, self.account_store, self.sessions, passwords,
                                  self.ratelimiter, self.uia)
        authenticate = RequestAuthenticator(self.auth)

        self.discovery = DiscoveryHandlers(config)
        self.session_handlers = SessionHandlers(self.registration, self.login, self.sessions, authenticate,
                                                self.ratelimiter)
        self.admin_register_handlers = AdminRegisterHandlers(self.registration)
        # The rooms work adds its member-event updater with profiles.add_profile_changed_callback.
        profile_store = ProfileStore(self.db)
        self.profiles = ProfileService(config.server_name, profile_store)
        self.account_data_store = AccountDataStore(self.db)
        self.account_data = AccountDataService(self.account_data_store)
        self.filters = FilterService(FilterStore(self.db))
        self.profile_handlers = ProfileHandlers(self.profiles, authenticate)
        self.account_data_handlers = AccountDataHandlers(self.account_data, authenticate)
        self.filter_handlers = FilterHandlers(self.filters, authenticate)
        self.capabilities_handlers = CapabilitiesHandlers(build_capabilities(config.default_room_version),
                                                          authenticate, self.auth.is_server_admin)
        self.devices = DeviceService(self.account_store, self.auth, self.uia, clock,
                                     last_seen_max_age_days=sessions_config["last_seen_max_age_days"])
        self.devices.start()
        self._background.append(self.devices)
        self.accounts = AccountService(self.account_store, self.auth, self.uia, self.devices, passwords)
        self.device_handlers = DeviceHandlers(self.devices, authenticate)
        self.account_handlers = AccountHandlers(self.accounts, authenticate)
        # Sync and push evaluation subscribe with push_rules.add_changed_callback.
        self.push_rules = PushRulesService(PushRuleStore(self.db))
        self.push_rule_handlers = PushRuleHandlers(self.push_rules, authenticate)
        # Media; federation later passes its RemoteMediaFetcher as `remote=`.
        self.media = MediaService(config.server_name, MediaStore(self.db),
                                  MediaFileStore(config.media["store_path"]), clock, self.ratelimiter,
                                  config.media)
        self.media.start()
        self._background.append(self.media)
        self.media_handlers = MediaHandlers(self.media, authenticate)

        # Rooms.
        self.notifier = Notifier()
        self.event_store = EventStore(self.db)
        self.alias_store = AliasStore(self.db)
        self.event_sender = RoomEventSender(config.server_name, self.signing_key, self.event_store, clock,
                                            self.notifier)
        self.room_creator = RoomCreator(config.server_name, self.event_sender, self.alias_store, clock,
                                        profile_store.get_profile, config.default_room_version)
        self.membership = MembershipService(config.server_name, self.event_sender, self.event_store,
                                            self.alias_store, profile_store.get_profile)
        self.profiles.add_profile_changed_callback(self.membership.update_profile_in_rooms)
        self.event_serializer = ClientEventSerializer(self.event_store, clock)
        self.room_reader = RoomReader(self.event_store, self.event_serializer)
        self.redactions = RedactionService(self.event_sender, self.event_store, clock,
                                           retention_days=config.section("rooms")["redaction_retention_days"])
        self.redactions.start()
        self._background.append(self.redactions)
        # History and relations; relations registers its after-persist callback after the redaction one.
        timeline_store = TimelineStore(self.db)
        self.history_visibility = HistoryVisibilityFilter(self.event_store, timeline_store)
        self.room_history = RoomHistory(self.event_store, timeline_store, self.event_serializer,
                                        self.history_visibility, self.account_data_store.get_global)
        self.relations = RelationsService(self.event_store, RelationStore(self.db), self.room_history,
                                          self.history_visibility, self.event_serializer, self.event_sender)
        self.history_handlers = HistoryHandlers(self.room_history, authenticate)
        self.relation_handlers = RelationHandlers(self.relations, authenticate)
        self.room_upgrader = RoomUpgrader(self.event_sender, self.event_store, self.alias_store, clock,
                                          profile_store.get_profile)
        self.room_handlers = RoomHandlers(self.room_creator, self.membership, self.event_sender, self.room_reader,
                                          self.redactions, self.room_upgrader, authenticate, self.ratelimiter)
        self.alias_service = AliasService(config.server_name, self.alias_store, self.event_store,
                                          self.event_sender, clock, self.auth.is_server_admin)
        self.directory_handlers = DirectoryHandlers(self.alias_service, authenticate)
        self.reports = ReportService(ReportStore(self.db), self.event_store, self.account_store, self.room_reader,
                                     clock)
        self.report_handlers = ReportHandlers(self.reports, authenticate, self.ratelimiter)
        self.whois = WhoisService(self.account_store, self.auth)
        self.client_admin_handlers = ClientAdminHandlers(self.whois, authenticate)
        self.unconfigured_handlers = UnconfiguredServiceHandlers(authenticate)
        # Directory and search (issue 7): canonical alias check on send, room and user directories,
        # and the search index fed after each event commits.
        self.event_sender.add_send_check(self.alias_service.check_canonical_alias)
        directory_store = DirectoryStore(self.db)
        self.room_directory = RoomDirectoryService(config.server_name, directory_store, self.event_store,
                                                   self.alias_service.may_manage_directory)
        self.public_room_handlers = PublicRoomHandlers(self.room_directory, authenticate)
        self.user_directory = UserDirectoryService(
            directory_store, search_all_users=config.section("user_directory")["search_all_users"])
        self.user_directory_handlers = UserDirectoryHandlers(self.user_directory, authenticate)
        self.hierarchy_handlers = HierarchyHandlers(SpaceHierarchyService(self.event_store), authenticate)
        self.search = SearchService(self.event_store, SearchStore(self.db), timeline_store, self.room_history,
                                    self.event_serializer)
        self.event_store.add_persist_hook(self.search.index_in_transaction)
        self.event_sender.add_persisted_callback(self.search.on_event_persisted)
        self.search_handlers = SearchHandlers(self.search, authenticate)
        # Ephemeral: typing and receipts are /sync ephemeral providers (current_position, events_for_rooms).
        self.typing = TypingService(self.event_store, self.notifier)
        self.event_sender.add_persisted_callback(self.typing.on_event_persisted)
        self._background.append(self.typing)
        self.receipts = ReceiptService(ReceiptStore(self.db), self.event_store, self.room_reader,
                                       self.account_data, self.notifier, clock)
        self.ephemeral_handlers = EphemeralHandlers(self.typing, self.receipts, authenticate)
        # Sync: typing and receipts plug in as ephemeral sources; account data and push rule
        # changes wake the user's waiting syncs.
        self.sync = SyncService(self.event_store, SyncStore(self.db), self.event_serializer,
                                self.account_data_store, self.push_rules, self.filters, self.notifier, clock)
        for source in (self.typing, self.receipts):
            self.sync.add_ephemeral_source(EphemeralSource(source.stream_name, source.current_position,
                                                           source.events_for_rooms))
        self.account_data.add_changed_callback(self.sync.account_data_changed)
        self.push_rules.add_changed_callback(self.sync.push_rules_changed)
        self.sync_handlers = SyncHandlers(self.sync, authenticate)
        # Push: every local event is evaluated for the room's local members off the send path;
        # counts reach /sync as room fields, notified members' pushers get gateway requests.
        self.notifications = NotificationService(config.server_name, self.event_store, NotificationStore(self.db),
                                                 self.push_rules, self.event_serializer, self.notifier, clock,
                                                 registry=self.metrics.registry)
        self.notifications.start()
        self._background.append(self.notifications)
        self.event_sender.add_persisted_callback(self.notifications.on_event_persisted)
        self.receipts.add_receipt_updated_callback(self.notifications.on_receipt)
        self.push_rules.add_changed_callback(self.notifications.on_push_rules_changed)
        self.account_data.add_changed_callback(self.notifications.on_account_data_changed)
        self.sync.add_room_fields_provider(self.notifications.room_fields)
        self.pushers = PusherService(PusherStore(self.db), self.notifications, clock)
        self.pushers.start()
        self._background.append(self.pushers)
        self.notifications.add_notified_callback(self.pushers.on_notified)
        self.pusher_handlers = PusherHandlers(self.pushers, self.notifications, authenticate)
        # Presence: a /sync top-level source; syncs and sent events keep users online.
        self.presence = PresenceService(config.server_name, PresenceStore(self.db), self.event_store, self.notifier,
                                        clock, enabled=config.section("presence")["enabled"])
        self.presence.start()
        self._background.append(self.presence)
        self.event_sender.add_persisted_callback(self.presence.on_event_persisted)
        self.sync.set_presence_tracker(self.presence.syncing)
        self.sync.add_top_level_source(TopLevelSource(self.presence.stream_name, self.presence.current_position,
                                                      self.presence.sync_sections))
        self.presence_handlers = PresenceHandlers(self.presence, authenticate)
        # End-to-end encryption: device lists (with key counts, every sync) and to-device messages are
        # /sync top-level sources; deleting a device drops its keys and inbox.
        e2ee_store = E2eeKeyStore(self.db)
        self.device_lists = DeviceListService(e2ee_store, self.event_store, self.notifier)
        self.event_sender.add_persisted_callback(self.device_lists.on_event_persisted)
        self.keys = KeysService(config.server_name, e2ee_store, self.device_lists, clock)
        self.devices.add_devices_deleted_callback(self.keys.delete_devices)
        self.sessions.add_devices_deleted_callback(self.keys.delete_devices)
        self.sessions.add_device_created_callback(self.keys.device_created)
        self.cross_signing = CrossSigningService(config.server_name, e2ee_store, self.device_lists, self.uia,
                                                 self.account_store, clock)
        self.to_device = ToDeviceService(config.server_name, ToDeviceStore(self.db), self.notifier, clock)
        self.key_backup = KeyBackupService(KeyBackupStore(self.db))
        self.sync.add_top_level_source(TopLevelSource(self.device_lists.stream_name,
                                                      self.device_lists.current_position,
                                                      self.device_lists.sync_sections, every_sync=True))
        self.sync.add_top_level_source(TopLevelSource(self.to_device.stream_name, self.to_device.current_position,
                                                      self.to_device.sync_sections, every_sync=True))
        self.keys_handlers = KeysHandlers(self.keys, self.cross_signing, authenticate)
        self.to_device_handlers = ToDeviceHandlers(self.to_device, authenticate)
        self.room_keys_handlers = RoomKeysHandlers(self.key_backup, authenticate)
        self._build_admin_services(authenticate)

    def _build_admin_services(self, authenticate: RequestAuthenticator) -> None:
        """The admin API (Synapse's `/_synapse/admin` and the spec's account moderation)."""
        config, clock = self.config, self.clock
        self.admin_store = AdminStore(self.db)
        admin_auth = AdminAuthenticator(authenticate, self.auth)
        self.admin_users = AdminUserService(
            config.server_name, self.account_store, self.admin_store, self.auth, self.accounts, self.devices,
            self.sessions, self.registration, self.profiles, self.passwords, self.event_store,
            PusherStore(self.db), self.account_data, self.ratelimiter, clock)
        self._admin_starts.append(self.admin_users)
        self.event_sender.add_send_check(self.admin_users.check_not_suspended)
        self.login_audit = LoginAuditService(config.server_name, LoginAuditStore(self.db), self.account_store, clock,
                                             max_age_days=config.section("admin")["login_audit_max_age_days"])
        self._admin_starts.append(self.login_audit)
        self.login.add_login_callback(self.login_audit.on_login)
        self.auth.add_sightings_callback(self.login_audit.on_sightings)
        self.whois.set_login_audit_source(self.login_audit.all_entries)
        self.admin_user_handlers = AdminUserHandlers(self.admin_users, self.whois, self.login_audit, admin_auth,
                                                     authenticate)
        self.server_notices = ServerNoticeService(
            config.server_name, config.section("server_notices"), self.account_store, self.admin_store,
            self.event_store, self.room_creator, self.membership, self.event_sender, self.account_data, clock)
        self.admin_server = AdminServerService(self.account_store, ReportStore(self.db), self.event_store, clock)
        self.admin_server_handlers = AdminServerHandlers(self.admin_server, self.server_notices, admin_auth)
        self.admin_tasks = AdminTaskRunner(self.admin_store, clock)
        self.admin_rooms = AdminRoomService(
            config.server_name, self.event_store, TimelineStore(self.db), self.admin_store, PurgeStore(self.db),
            self.account_store, self.alias_store, self.event_sender, self.membership, self.room_creator,
            self.event_serializer, self.admin_tasks, clock)
        self.event_sender.add_send_check(self.admin_rooms.check_not_blocked)
        self._admin_starts.append(self.admin_tasks)
        self.admin_room_handlers = AdminRoomHandlers(self.admin_rooms, admin_auth)
        self.user_redactions = UserRedactionService(config.server_name, self.event_store, self.admin_store,
                                                    self.redactions, self.admin_tasks)
        self.user_redaction_handlers = UserRedactionHandlers(self.user_redactions, admin_auth)
        self.admin_media = AdminMediaService(config.server_name, self.media, MediaStore(self.db), self.admin_store,
                                             self.account_store, self.event_store)
        self.admin_media_handlers = AdminMediaHandlers(self.admin_media, admin_auth)

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
            self.search_handlers.register_routes(app)
            self.presence_handlers.register_routes(app)
            self.keys_handlers.register_routes(app)
            self.to_device_handlers.register_routes(app)
            self.room_keys_handlers.register_routes(app)
            self.ephemeral_handlers.register_routes(app)
            self.sync_handlers.register_routes(app)
            self.pusher_handlers.register_routes(app)
            self.admin_user_handlers.register_client_routes(app)
        if "federation" in listener.resources:
            self.discovery.register_federation(app)
        if "admin" in listener.resources:
            self.admin_register_handlers.register_routes(app)
            self.admin_user_handlers.register_routes(app)
            self.admin_server_handlers.register_routes(app)
            self.admin_room_handlers.register_routes(app)
            self.admin_media_handlers.register_routes(app)
            self.user_redaction_handlers.register_routes(app)
        if "metrics" in listener.resources:
            self.metrics.register_routes(app)
        return app

    async def _start_listener(self, listener: ListenerConfig) -> None:
        app = self._build_listener_app(listener)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.config.shutdown_timeout,
                               handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        ssl_context = None
        if listener.tls:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(listener.tls.certificate_path, listener.tls.private_key_path)
        site = web.TCPSite(runner, listener.host, listener.port, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.bound_listeners.append((listener, listener.host, port))


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
