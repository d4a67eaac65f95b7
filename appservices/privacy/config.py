"""`privacy.yaml`: parsed into frozen dataclasses, every problem reported at once naming its key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("nl", "en")


class PrivacyConfigError(ValueError):
    """The config file is unusable; the message lists every problem, one a line."""


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str = "sqlite"  # sqlite | postgres
    path: str = "privacy.db"
    dsn: str = ""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "privacy@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False


@dataclass(frozen=True)
class RetentionConfig:
    """The retention policy: inactive accounts, room history, and what erasure keeps and why."""

    inactivity_days: int | None = 182  # about 6 months; None disables the inactivity rule
    warn_days_before: int = 14
    interval_hours: float = 24.0
    # Room history: m.room.retention max_lifetime is clamped to these limits (days).
    room_min_lifetime_days: float = 1.0
    room_max_lifetime_days: float | None = None
    room_default_lifetime_days: float | None = None  # rooms without m.room.retention; None keeps
    skip_public_rooms: bool = True
    # Data classes erasure keeps, with the reason stated in reports: {class: why}.
    kept: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsentConfig:
    """Versioned policy documents: {version: {language: path to an HTML or text file}}."""

    version: str | None = None
    documents: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PrivacyConfig:
    homeserver_url: str
    server_name: str
    as_token: str
    hs_token: str
    admin_api_token: str  # for this service's own admin API
    public_url: str  # where the homeserver and members reach this service
    bind_host: str = "127.0.0.1"
    bind_port: int = 8010
    admin_token: str | None = None  # a homeserver admin's access token; the as_token otherwise
    # With the homeserver's registration shared secret the service makes its bot an admin at start-up.
    homeserver_shared_secret: str | None = None
    bot_localpart: str = "privacy"
    service_id: str = "privacy"
    language: str = "nl"
    database: DatabaseConfig = DatabaseConfig()
    export_expiry_hours: float = 72.0
    export_progress_every: int = 2000
    erase_code_ttl_minutes: float = 30.0
    keep_public_room_messages: bool = True
    security_notices: bool = True
    retention: RetentionConfig = RetentionConfig()
    consent: ConsentConfig = ConsentConfig()
    smtp: SmtpConfig | None = None
    source: str = ""

    @property
    def bot_user_id(self) -> str:
        return f"@{self.bot_localpart}:{self.server_name}"


def _section(raw: dict[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping")
        return {}
    return value


def _number(raw: dict[str, Any], key: str, where: str, default: Any, problems: list[str], *,
            integer: bool = False, optional: bool = False) -> Any:
    value = raw.get(key, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0:
        problems.append(f"{where}{key}: must be a non-negative {'integer' if integer else 'number'}")
        return default
    return value


def _string(raw: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool = True,
            default: str | None = None) -> Any:
    value = raw.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}{key}: {'required, ' if key not in raw else ''}must be a non-empty string")
        return default or ""
    return value


def parse_privacy_config(raw: Any, source: str = "") -> PrivacyConfig:
    if not isinstance(raw, dict):
        raise PrivacyConfigError(f"{source or 'config'}: must be a mapping")
    problems: list[str] = []
    homeserver_url = _string(raw, "homeserver_url", "", problems).rstrip("/")
    server_name = _string(raw, "server_name", "", problems)
    as_token = _string(raw, "as_token", "", problems)
    hs_token = _string(raw, "hs_token", "", problems)
    admin_api_token = _string(raw, "admin_api_token", "", problems)
    bind = _section(raw, "bind", problems)
    bind_host = _string(bind, "host", "bind.", problems, default="127.0.0.1")
    bind_port = _number(bind, "port", "bind.", 8010, problems, integer=True)
    public_url = _string(raw, "public_url", "", problems, default=f"http://{bind_host}:{bind_port}").rstrip("/")
    language = raw.get("language", "nl")
    if language not in LANGUAGES:
        problems.append(f"language: must be one of {list(LANGUAGES)}")
        language = "nl"

    db = _section(raw, "database", problems)
    engine = db.get("engine", "sqlite")
    if engine not in ("sqlite", "postgres"):
        problems.append("database.engine: must be 'sqlite' or 'postgres'")
    database = DatabaseConfig(engine=engine, path=str(db.get("path", "privacy.db")), dsn=str(db.get("dsn", "")))
    if engine == "postgres" and not database.dsn:
        problems.append("database.dsn: required for the postgres engine")

    export = _section(raw, "export", problems)
    erasure = _section(raw, "erasure", problems)
    ret = _section(raw, "retention", problems)
    kept = ret.get("kept") or {}
    if not isinstance(kept, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in kept.items()):
        problems.append("retention.kept: must map data class names to the reason they are kept")
        kept = {}
    retention = RetentionConfig(
        inactivity_days=_number(ret, "inactivity_days", "retention.", 182, problems, integer=True, optional=True),
        warn_days_before=_number(ret, "warn_days_before", "retention.", 14, problems, integer=True),
        interval_hours=_number(ret, "interval_hours", "retention.", 24.0, problems),
        room_min_lifetime_days=_number(ret, "room_min_lifetime_days", "retention.", 1.0, problems),
        room_max_lifetime_days=_number(ret, "room_max_lifetime_days", "retention.", None, problems, optional=True),
        room_default_lifetime_days=_number(ret, "room_default_lifetime_days", "retention.", None, problems,
                                           optional=True),
        skip_public_rooms=bool(ret.get("skip_public_rooms", True)),
        kept=dict(kept),
    )

    con = _section(raw, "consent", problems)
    documents = con.get("documents") or {}
    if not isinstance(documents, dict) or not all(
            isinstance(langs, dict) and all(isinstance(p, str) for p in langs.values()) for langs in documents.values()):
        problems.append("consent.documents: must map each version to {language: file path}")
        documents = {}
    base = Path(source).parent if source else Path(".")
    documents = {str(v): {lang: str(base / p) for lang, p in langs.items()} for v, langs in documents.items()}
    version = con.get("version")
    if version is not None and str(version) not in documents:
        problems.append(f"consent.version: {version!r} has no entry in consent.documents")
    consent = ConsentConfig(version=None if version is None else str(version), documents=documents)

    smtp = None
    if raw.get("smtp"):
        s = _section(raw, "smtp", problems)
        smtp = SmtpConfig(host=_string(s, "host", "smtp.", problems),
                          port=_number(s, "port", "smtp.", 25, problems, integer=True),
                          sender=_string(s, "from", "smtp.", problems, default="privacy@localhost"),
                          username=s.get("username"), password=s.get("password"),
                          starttls=bool(s.get("starttls", False)))

    export_expiry_hours = _number(export, "expiry_hours", "export.", 72.0, problems)
    export_progress_every = _number(export, "progress_every", "export.", 2000, problems, integer=True)
    erase_code_ttl_minutes = _number(erasure, "code_ttl_minutes", "erasure.", 30.0, problems)
    if problems:
        raise PrivacyConfigError("\n".join(f"{source or 'config'}: {p}" for p in problems))
    return PrivacyConfig(
        homeserver_url=homeserver_url, server_name=server_name, as_token=as_token, hs_token=hs_token,
        admin_api_token=admin_api_token, public_url=public_url, bind_host=bind_host, bind_port=bind_port,
        admin_token=raw.get("admin_token") or None,
        homeserver_shared_secret=raw.get("homeserver_shared_secret") or None, bot_localpart=str(raw.get("bot_localpart", "privacy")),
        service_id=str(raw.get("id", "privacy")), language=language, database=database,
        export_expiry_hours=export_expiry_hours, export_progress_every=export_progress_every,
        erase_code_ttl_minutes=erase_code_ttl_minutes,
        keep_public_room_messages=bool(erasure.get("keep_public_room_messages", True)),
        security_notices=bool(raw.get("security_notices", True)),
        retention=retention, consent=consent, smtp=smtp, source=source,
    )


def load_privacy_config(path: str) -> PrivacyConfig:
    with open(path, encoding="utf-8") as f:
        return parse_privacy_config(yaml.safe_load(f), source=path)


def registration(config: PrivacyConfig) -> dict[str, Any]:
    """The registration file the homeserver loads: the bot alone, exclusively."""
    escaped = config.server_name.replace(".", r"\.")
    return {
        "id": config.service_id,
        "url": config.public_url,
        "as_token": config.as_token,
        "hs_token": config.hs_token,
        "sender_localpart": config.bot_localpart,
        "namespaces": {
            "users": [{"regex": f"@{config.bot_localpart}:{escaped}", "exclusive": True}],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
    }


def registration_yaml(config: PrivacyConfig) -> str:
    return yaml.safe_dump(registration(config), sort_keys=False)


def generate_config(server_name: str, homeserver_url: str, data_dir: str, port: int = 8010,
                    shared_secret: str | None = None) -> dict[str, Any]:
    """A new privacy.yaml for `make run`: fresh tokens, SQLite under `data_dir`."""
    import secrets

    raw: dict[str, Any] = {
        "homeserver_url": homeserver_url, "server_name": server_name,
        "as_token": secrets.token_urlsafe(32), "hs_token": secrets.token_urlsafe(32),
        "admin_api_token": secrets.token_urlsafe(32),
        "bind": {"host": "127.0.0.1", "port": port}, "public_url": f"http://127.0.0.1:{port}",
        "database": {"engine": "sqlite", "path": str(Path(data_dir) / "privacy.db")},
        "language": "nl",
    }
    if shared_secret:
        raw["homeserver_shared_secret"] = shared_secret
    return raw
