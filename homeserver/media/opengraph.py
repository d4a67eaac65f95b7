"""OpenGraph metadata from an HTML page (stdlib html.parser): og:* tags, else <title> and description."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

MAX_VALUE_LENGTH = 1000
MAX_DESCRIPTION_LENGTH = 500
_CHARSET_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.description: str | None = None
        self.title_parts: list[str] = []
        self.first_image: str | None = None
        self._in_title = False
        self._title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta":
            key = (values.get("property") or values.get("name") or "").strip().lower()
            content = values.get("content")
            if content is None:
                return
            if key.startswith("og:") and key not in self.og:
                self.og[key] = content.strip()[:MAX_VALUE_LENGTH]
            elif key == "description" and self.description is None:
                self.description = content.strip()
        elif tag == "title" and not self._title_done:
            self._in_title = True
        elif tag == "img" and self.first_image is None and values.get("src"):
            self.first_image = values["src"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)


def decode_html(body: bytes, content_type: str | None) -> str:
    """Text of a page: charset from the Content-Type header, else a <meta charset>, else UTF-8."""
    charset = None
    if content_type:
        match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_\-]+)", content_type, re.IGNORECASE)
        if match:
            charset = match.group(1)
    if charset is None:
        match = _CHARSET_META.search(body[:4096])
        if match:
            charset = match.group(1).decode("ascii")
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _clean(text: str, limit: int) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def parse_opengraph(html: str, page_url: str) -> dict[str, Any]:
    """The og:* keys of a page, with og:title/og:description/og:image filled from plain HTML when absent.

    `og:image` is made absolute against `page_url`.
    """
    parser = _MetaParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; a failure must not lose what was already read
        pass
    og: dict[str, Any] = dict(parser.og)
    if not og.get("og:title"):
        title = _clean("".join(parser.title_parts), MAX_VALUE_LENGTH)
        if title:
            og["og:title"] = title
    if not og.get("og:description") and parser.description:
        og["og:description"] = _clean(parser.description, MAX_DESCRIPTION_LENGTH)
    image = og.get("og:image") or parser.first_image
    if image:
        absolute = urljoin(page_url, image)
        if absolute.startswith(("http://", "https://")):
            og["og:image"] = absolute
        else:
            og.pop("og:image", None)
    return og
