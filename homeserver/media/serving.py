"""Headers for serving user-supplied media safely: disposition, file names, and sandboxing."""

from __future__ import annotations

from urllib.parse import quote

# The spec's list of types that cannot script when rendered inline (content_repo.md, "Serving inline
# content"); everything else is sent as an attachment so a browser never renders it as a page.
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# RFC 6266 / RFC 5987 attr-char: what may appear unescaped in `filename*=utf-8''...`.
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"
# RFC 2616 token characters: a name made only of these can be sent as a plain `filename=`.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def base_type(content_type: str | None) -> str:
    """`text/plain; charset=utf-8` -> `text/plain`, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_inline_safe(content_type: str | None) -> bool:
    return base_type(content_type) in INLINE_CONTENT_TYPES


def served_content_type(content_type: str | None) -> str:
    """The stored type, or octet-stream; text without a charset is declared UTF-8 as Synapse does."""
    if not content_type or "/" not in content_type:
        return DEFAULT_CONTENT_TYPE
    if base_type(content_type).startswith("text/") and "charset" not in content_type.lower():
        return f"{content_type}; charset=UTF-8"
    return content_type


def filename_parameter(name: str) -> str:
    """`filename=...` for plain token names, otherwise RFC 5987 `filename*=utf-8''percent-encoded`."""
    if name and all(c in _TOKEN_CHARS for c in name):
        return f"filename={name}"
    return "filename*=utf-8''" + quote(name, safe=_ATTR_CHAR_SAFE)


def content_disposition(content_type: str | None, file_name: str | None) -> str:
    disposition = "inline" if is_inline_safe(content_type) else "attachment"
    if file_name:
        return f"{disposition}; {filename_parameter(file_name)}"
    return disposition


def media_headers(content_type: str | None, file_name: str | None) -> dict[str, str]:
    """Every header a media download or thumbnail response carries."""
    return {
        **SECURITY_HEADERS,
        "Content-Type": served_content_type(content_type),
        "Content-Disposition": content_disposition(content_type, file_name),
        # Media never changes once written: let the client cache, but not shared caches (it is
        # behind authentication on the v1 endpoints).
        "Cache-Control": "private, max-age=86400",
    }
