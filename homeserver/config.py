"""Configuration: YAML -> validated, typed `Config`.

The JSON schema below is the single description of every option (`config.sample.yaml`
documents them for people). Loading reports every problem at once, one line each,
naming the key and what was expected, e.g. `listeners[0].port: expected an integer,
got "80a"`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import jsonschema
import yaml

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from storage.database import DatabaseConfigError
from storage.engine import parse_database_config


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
_RATE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "per_second": {"type": "number", "exclusiveMinimum": 0},
        "burst_count": {"type": "integer", "minimum": 1},
    },
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["server_name"],
    "properties": {
        "server_name": {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9.\-\[\]:]+$"},
        "public_baseurl": {"type": ["string", "null"], "pattern": "^https?://"},
        "serve_server_wellknown": {"type": "boolean"},
        "signing_key_path": {"type": "string"},
        "data_dir": {"type": "string"},
        "default_room_version": {"type": "string", "enum": sorted(KNOWN_ROOM_VERSIONS)},
        "listeners": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["port"],
                "properties": {
                    "host": {"type": "string"},
                    "port": _PORT,
                    "resources": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["client", "federation", "admin", "metrics"]},
                    },
                    "tls": {
                        "type": ["object", "null"],
                        "additionalProperties": False,
                        "required": ["certificate_path", "private_key_path"],
                        "properties": {
                            "certificate_path": {"type": "string"},
                            "private_key_path": {"type": "string"},
                        },
                    },
                },
            },
        },
        # The options of each engine are described once, in storage/engine.py, and checked
        # against it by `validate_config_dict`.
        "database": {
            "type": "object",
            "properties": {"engine": {"enum": ["sqlite", "postgres"]}},
        },
        "http": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_request_body_size": {"type": "integer", "minimum": 1024},
                "shutdown_timeout": {"type": "number", "minimum": 0},
                "x_forwarded": {"type": "boolean"},
            },
        },
        "media": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "store_path": {"type": "string"},
                "max_upload_size": {"type": "integer", "minimum": 1},
                "max_image_pixels": {"type": "integer", "minimum": 1},
                "unauthenticated_media_enabled": {"type": "boolean"},
                # ISO date (UTC) of the spec's "freeze": media added from then on is only served by
                # the authenticated endpoints.
                "unauthenticated_media_freeze_date": {
                    "type": ["string", "null"],
                    "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?)?$",
                },
                "url_preview_enabled": {"type": "boolean"},
                "url_preview_ip_range_allowlist": {"type": "array", "items": {"type": "string"}},
            },
        },
        "registration": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "require_token": {"type": "boolean"},
                "shared_secret": {"type": ["string", "null"]},
                "allow_guests": {"type": "boolean"},
            },
        },
        "rooms": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "redaction_retention_days": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "presence": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
            },
        },
        "sync": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "gapless_window_ms": {"type": "integer", "minimum": 0},
            },
        },
        "outbound": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_retry_interval_s": {"type": "number", "exclusiveMinimum": 0},
                "max_retry_interval_s": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "user_directory": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "search_all_users": {"type": "boolean"},
            },
        },
        "identity": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                # Identity servers clients may name (null: any that resolves to a public address).
                "trusted_servers": {"type": ["array", "null"], "items": {"type": "string"}},
                # "http" only for tests against an identity server on loopback.
                "scheme": {"enum": ["https", "http"]},
                "ip_range_allowlist": {"type": "array", "items": {"type": "string"}},
            },
        },
        "sessions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "refreshable_access_token_lifetime_ms": {"type": ["integer", "null"], "minimum": 1000},
                "refresh_token_lifetime_ms": {"type": ["integer", "null"], "minimum": 1000},
                "login_token_lifetime_ms": {"type": "integer", "minimum": 1000},
                "last_seen_max_age_days": {"type": "integer", "minimum": 1},
                # POST /login/get_token: a signed-in device issues a login token for a new one.
                "login_via_existing_session": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "require_ui_auth": {"type": "boolean"},
                        "token_timeout_ms": {"type": "integer", "minimum": 1000},
                    },
                },
            },
        },
        # GET /.well-known/matrix/support; 404 while neither contacts nor a support page is set.
        "support": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "contacts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["role"],
                        "anyOf": [{"required": ["matrix_id"]}, {"required": ["email_address"]}],
                        "properties": {
                            "matrix_id": {"type": "string", "pattern": "^@"},
                            "email_address": {"type": "string"},
                            "role": {"type": "string", "minLength": 1},
                        },
                    },
                },
                "support_page": {"type": ["string", "null"], "pattern": "^https?://"},
            },
        },
        "server_notices": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "system_mxid_localpart": {"type": ["string", "null"], "pattern": "^[a-z0-9._=/+-]+$"},
                "system_mxid_display_name": {"type": ["string", "null"]},
                "system_mxid_avatar_url": {"type": ["string", "null"]},
                "room_name": {"type": "string"},
                "room_topic": {"type": ["string", "null"]},
            },
        },
        "admin": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "login_audit_max_age_days": {"type": "integer", "minimum": 1},
            },
        },
        # Consent to the privacy policy (the version itself is set through the admin API).
        "consent": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "block_events": {"type": "boolean"},
                "exempt_users": {"type": "array", "items": {"type": "string", "pattern": "^@"}},
            },
        },
        # Outgoing e-mail (3PID validation) through an SMTP server; off while smtp_host is null.
        "email": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "smtp_host": {"type": ["string", "null"]},
                "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "smtp_user": {"type": ["string", "null"]},
                "smtp_pass": {"type": ["string", "null"]},
                "require_transport_security": {"type": "boolean"},
                "force_tls": {"type": "boolean"},
                "notif_from": {"type": "string", "minLength": 3},
                "app_name": {"type": "string"},
                "validation_token_lifetime_ms": {"type": "integer", "minimum": 60_000},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "passwords": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "bcrypt_rounds": {"type": "integer", "minimum": 4, "maximum": 31},
                "pepper": {"type": "string"},
            },
        },
        "rate_limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "message": _RATE,
                "login": _RATE,
                "login_failures": _RATE,
                "registration": _RATE,
                "registration_checks": _RATE,
                "login_token_request": _RATE,
                "media_upload": _RATE,
            },
        },
        # Registration files of application services (bridges, bots), as Synapse names the option.
        "app_service_config_files": {"type": "array", "items": {"type": "string", "minLength": 1}},
        # Also send hs_token as the deprecated `access_token` query parameter (Synapse's option).
        "use_appservice_legacy_authorization": {"type": "boolean"},
        "federation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "server_allowlist": {"type": ["array", "null"], "items": {"type": "string"}},
                "server_denylist": {"type": "array", "items": {"type": "string"}},
                "ca_bundle_path": {"type": ["string", "null"]},
                "allow_loopback": {"type": "boolean"},
                "allow_private_ranges": {"type": "boolean"},
                "ip_range_allowlist": {"type": "array", "items": {"type": "string"}},
                "min_retry_interval_ms": {"type": "integer", "minimum": 1},
                "request_timeout_s": {"type": "number", "exclusiveMinimum": 0},
                "max_response_bytes": {"type": "integer", "minimum": 1024},
                "faster_joins": {"type": "boolean"},
                "faster_joins_resync_delay_ms": {"type": "integer", "minimum": 0},
                "key_validity_period_ms": {"type": "integer", "minimum": 60000},
                "old_signing_keys_path": {"type": "string"},
                "trusted_key_servers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["server_name"],
                        "properties": {
                            "server_name": {"type": "string", "minLength": 1},
                            "verify_keys": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "logging": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
                "format": {"enum": ["text", "json"]},
            },
        },
    },
}

DEFAULTS: dict[str, Any] = {
    "public_baseurl": None,
    "serve_server_wellknown": False,
    "signing_key_path": "signing.key",
    "data_dir": ".",
    "default_room_version": "11",
    "listeners": [
        # Metrics are off unless a listener with the `metrics` resource is configured (as in Synapse).
        {"host": "127.0.0.1", "port": 8008, "resources": ["client", "federation", "admin"]},
    ],
    "database": {"engine": "sqlite"},
    "http": {"max_request_body_size": 50 * 1024 * 1024, "shutdown_timeout": 10, "x_forwarded": False},
    "media": {
        "store_path": "media_store",
        "max_upload_size": 50 * 1024 * 1024,
        "max_image_pixels": 32_000_000,
        "unauthenticated_media_enabled": True,
        "unauthenticated_media_freeze_date": None,
        "url_preview_enabled": False,
        "url_preview_ip_range_allowlist": [],
    },
    "registration": {"enabled": False, "require_token": False, "shared_secret": None, "allow_guests": False},
    "rooms": {"redaction_retention_days": 7},
    "presence": {"enabled": True},
    "sync": {"gapless_window_ms": 60_000},
    "outbound": {"min_retry_interval_s": 2.0, "max_retry_interval_s": 3600.0},
    "user_directory": {"search_all_users": False},
    "identity": {"trusted_servers": None, "scheme": "https", "ip_range_allowlist": []},
    "sessions": {
        "refreshable_access_token_lifetime_ms": 300_000,
        "refresh_token_lifetime_ms": None,
        "login_token_lifetime_ms": 120_000,
        "last_seen_max_age_days": 90,
        "login_via_existing_session": {"enabled": False, "require_ui_auth": True, "token_timeout_ms": 300_000},
    },
    "support": {"contacts": [], "support_page": None},
    "server_notices": {
        "system_mxid_localpart": None,
        "system_mxid_display_name": "Server Notices",
        "system_mxid_avatar_url": None,
        "room_name": "Server Notices",
        "room_topic": None,
    },
    "admin": {"login_audit_max_age_days": 28},
    "consent": {"block_events": True, "exempt_users": []},
    "email": {
        "smtp_host": None,
        "smtp_port": 25,
        "smtp_user": None,
        "smtp_pass": None,
        "require_transport_security": False,
        "force_tls": False,
        "notif_from": "%(app)s <noreply@localhost>",
        "app_name": "Matrix",
        "validation_token_lifetime_ms": 3_600_000,
        "timeout_s": 30,
    },
    "passwords": {"bcrypt_rounds": 12, "pepper": ""},
    "rate_limits": {
        "enabled": True,
        "message": {"per_second": 0.2, "burst_count": 10},
        "login": {"per_second": 0.17, "burst_count": 3},
        "login_failures": {"per_second": 0.17, "burst_count": 3},
        "registration": {"per_second": 0.17, "burst_count": 3},
        "registration_checks": {"per_second": 1.0, "burst_count": 10},
        "login_token_request": {"per_second": 0.0167, "burst_count": 1},
        "media_upload": {"per_second": 1.0, "burst_count": 10},
    },
    "app_service_config_files": [],
    "use_appservice_legacy_authorization": False,
    "federation": {
        "enabled": True,
        "server_allowlist": None,
        "server_denylist": [],
        "ca_bundle_path": None,
        "allow_loopback": False,
        "allow_private_ranges": False,
        "ip_range_allowlist": [],
        "min_retry_interval_ms": 60_000,
        "request_timeout_s": 60,
        "max_response_bytes": 50 * 1024 * 1024,
        "faster_joins": True,
        "faster_joins_resync_delay_ms": 2500,
        "key_validity_period_ms": 24 * 60 * 60 * 1000,
        "old_signing_keys_path": "old_signing_keys.json",
        "trusted_key_servers": [],
    },
    "logging": {"level": "INFO", "format": "text"},
}


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    certificate_path: str
    private_key_path: str


@dataclasses.dataclass(frozen=True)
class ListenerConfig:
    host: str
    port: int
    resources: tuple[str, ...]
    tls: TlsConfig | None


@dataclasses.dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst_count: int


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated configuration. `raw` keeps the full merged dict for later sections."""

    server_name: str
    public_baseurl: str
    serve_server_wellknown: bool
    signing_key_path: str
    data_dir: str
    default_room_version: str
    listeners: tuple[ListenerConfig, ...]
    database: dict[str, Any]
    max_request_body_size: int
    shutdown_timeout: float
    media: dict[str, Any]
    registration: dict[str, Any]
    passwords: dict[str, Any]
    rate_limits_enabled: bool
    rate_limits: dict[str, RateLimit]
    log_level: str
    log_format: str
    raw: dict[str, Any]
    # Paths resolved against the config file's directory.
    app_service_config_files: tuple[str, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        return self.raw.get(name, {})


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return str(value)


def _explain(error: jsonschema.ValidationError) -> str:
    path = _format_path(error.absolute_path)
    validator, expected, value = error.validator, error.validator_value, error.instance
    if validator == "type":
        types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return f"{path}: expected {wanted}, got {_describe(value)}"
    if validator == "enum":
        options = ", ".join(_describe(v) for v in expected)
        return f"{path}: expected one of {options}, got {_describe(value)}"
    if validator == "required":
        missing = [k for k in expected if k not in value]
        prefix = f"{path}." if error.absolute_path else ""
        return "; ".join(f"{prefix}{k}: required key is missing" for k in missing)
    if validator == "additionalProperties":
        unknown = sorted(set(value) - set(error.schema.get("properties", {})))
        prefix = f"{path}." if error.absolute_path else ""
        return "; ".join(f"{prefix}{k}: unknown key" for k in unknown)
    if validator in ("minimum", "maximum", "exclusiveMinimum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[validator]
        return f"{path}: expected a value {word} {expected}, got {_describe(value)}"
    if validator == "pattern":
        return f"{path}: {_describe(value)} does not match the expected form {expected}"
    if validator in ("minItems", "minLength"):
        return f"{path}: must not be empty"
    return f"{path}: {error.message}"


def _federation_problems(section: Any) -> list[str]:
    """What the schema cannot say about `federation`: CIDR ranges and server names that parse."""
    import ipaddress

    from homeserver.identifiers import is_valid_server_name

    if not isinstance(section, dict):
        return []
    problems = []
    for i, entry in enumerate(section.get("ip_range_allowlist") or []):
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            problems.append(f"federation.ip_range_allowlist[{i}]: {_describe(entry)} is not an IP range (CIDR)")
    for key in ("server_allowlist", "server_denylist"):
        for i, entry in enumerate(section.get(key) or []):
            if isinstance(entry, str) and not is_valid_server_name(entry.removeprefix("*.")):
                problems.append(f"federation.{key}[{i}]: {_describe(entry)} is not a server name")
    return problems


def _database_with_defaults(section: dict[str, Any]) -> dict[str, Any]:
    """The `database` section with the engine named and SQLite's file given (relative to data_dir)."""
    database = {"engine": "sqlite", **section}
    if database["engine"] == "sqlite":
        database.setdefault("path", "homeserver.db")
    return database


def validate_config_dict(raw: dict[str, Any]) -> None:
    """Raise ConfigError listing every schema violation in `raw`."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping of options"])
    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_explain(e) for e in errors]
    raw_db = raw.get("database") or {}
    if isinstance(raw_db, dict) and raw_db.get("engine", "sqlite") in ("sqlite", "postgres"):
        try:
            parse_database_config(_database_with_defaults(raw_db))
        except DatabaseConfigError as e:
            problems.append(str(e))
    problems.extend(_federation_problems(raw.get("federation")))
    if problems:
        raise ConfigError(problems)


def parse_config(raw: dict[str, Any], base_dir: str = ".") -> Config:
    """Validate a raw config mapping and return the typed Config."""
    validate_config_dict(raw)
    merged = _deep_merge(DEFAULTS, raw)
    data_dir = os.path.join(base_dir, merged["data_dir"])

    def in_data_dir(path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(data_dir, path))

    listeners = tuple(
        ListenerConfig(
            host=lst.get("host", "127.0.0.1"),
            port=lst["port"],
            resources=tuple(lst.get("resources", ["client", "federation", "admin"])),
            tls=TlsConfig(**lst["tls"]) if lst.get("tls") else None,
        )
        for lst in merged["listeners"]
    )
    database = _database_with_defaults(merged["database"])
    if database["engine"] == "sqlite":
        database["path"] = in_data_dir(database["path"])
    engine, options = parse_database_config(database)
    database = {"engine": engine, **options}
    media = dict(merged["media"])
    media["store_path"] = in_data_dir(media["store_path"])
    federation = merged["federation"]
    federation["old_signing_keys_path"] = in_data_dir(federation["old_signing_keys_path"])
    if federation["ca_bundle_path"]:
        federation["ca_bundle_path"] = in_data_dir(federation["ca_bundle_path"])
    public_baseurl = merged["public_baseurl"]
    if not public_baseurl:
        first = listeners[0]
        scheme = "https" if first.tls else "http"
        public_baseurl = f"{scheme}://{merged['server_name']}/"
    if not public_baseurl.endswith("/"):
        public_baseurl += "/"
    rate = merged["rate_limits"]
    return Config(
        server_name=merged["server_name"],
        public_baseurl=public_baseurl,
        serve_server_wellknown=merged["serve_server_wellknown"],
        signing_key_path=in_data_dir(merged["signing_key_path"]),
        data_dir=os.path.normpath(data_dir),
        default_room_version=merged["default_room_version"],
        listeners=listeners,
        database=database,
        max_request_body_size=merged["http"]["max_request_body_size"],
        shutdown_timeout=float(merged["http"]["shutdown_timeout"]),
        media=media,
        registration=dict(merged["registration"]),
        passwords=dict(merged["passwords"]),
        rate_limits_enabled=rate["enabled"],
        rate_limits={k: RateLimit(**v) for k, v in rate.items() if isinstance(v, dict)},
        log_level=merged["logging"]["level"],
        log_format=merged["logging"]["format"],
        raw=merged,
        app_service_config_files=tuple(
            p if os.path.isabs(p) else os.path.normpath(os.path.join(base_dir, p))
            for p in merged["app_service_config_files"]
        ),
    )


def load_config(path: str) -> Config:
    """Read, validate and type the YAML config at `path`; relative paths resolve next to it."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file; create one with `homeserver generate-config`"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from None
    if raw is None:
        raw = {}
    return parse_config(raw, base_dir=os.path.dirname(os.path.abspath(path)))


# --- `--set KEY=VALUE` overrides -------------------------------------------------


def _schema_at(schema: dict[str, Any], part: str, dotted: str) -> dict[str, Any]:
    if schema.get("type") == "array" or "items" in schema:
        if not part.isdigit():
            raise ConfigError([f"{dotted}: {part!r} is not a list index"])
        return schema.get("items", {})
    props = schema.get("properties")
    if props is not None and part in props:
        return props[part]
    if props is not None and schema.get("additionalProperties") is not False:
        # An open section (`database`): its keys are checked where the section is parsed.
        return {}
    raise ConfigError([f"{dotted}: unknown key {part!r}"])


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=yaml-value` to `raw` in place; unknown keys are an error."""
    if "=" not in assignment:
        raise ConfigError([f"{assignment}: expected KEY=VALUE"])
    dotted, text = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError([f"{dotted}: value is not valid YAML: {e}"]) from None
    schema: dict[str, Any] = CONFIG_SCHEMA
    target: Any = raw
    for i, part in enumerate(parts):
        schema = _schema_at(schema, part, dotted)
        last = i == len(parts) - 1
        if isinstance(target, list):
            index = int(part)
            if index > len(target):
                raise ConfigError([f"{dotted}: list index {index} is past the end (length {len(target)})"])
            if index == len(target):
                target.append({} if not last else None)
            if last:
                target[index] = value
            else:
                if target[index] is None:
                    target[index] = [] if "items" in schema else {}
                target = target[index]
        else:
            if last:
                target[part] = value
            else:
                if not isinstance(target.get(part), (dict, list)):
                    target[part] = [] if "items" in schema else {}
                target = target[part]


def generate_config_dict(server_name: str, data_dir: str = ".", overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The config `generate-config` writes: the defaults made explicit, plus overrides."""
    import secrets

    raw: dict[str, Any] = copy.deepcopy(DEFAULTS)
    raw["server_name"] = server_name
    raw["data_dir"] = data_dir
    raw["registration"]["shared_secret"] = secrets.token_urlsafe(32)
    for assignment in overrides:
        apply_override(raw, assignment)
    validate_config_dict(raw)
    return raw
