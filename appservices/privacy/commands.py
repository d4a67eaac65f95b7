"""What a member typed, as a command: a table of words in Dutch and English, and language detection.

Pure functions. A command is its first word (case-insensitive; `word-ARG` counts as `word ARG`, so
a notice can offer the one-word command `afmelden-ABCDEF`), then arguments. Words that only occur in
English (`erase`, `sessions`, `please` ...) make the reply English, words only Dutch (`wis`,
`sessies`, `graag` ...) make it Dutch; a message with neither (`export`, `help`) keeps the member's
language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# command word -> (command, language it reveals or None when both languages use it)
WORDS: dict[str, tuple[str, str | None]] = {
    "help": ("help", None), "hulp": ("help", "nl"), "?": ("help", None), "commands": ("help", "en"),
    "commando's": ("help", "nl"),
    "export": ("export", None), "exporteer": ("export", "nl"), "exporteren": ("export", "nl"),
    "inzage": ("export", "nl"), "download": ("export", None),
    "erase": ("erase", "en"), "delete": ("erase", "en"), "wis": ("erase", "nl"), "wissen": ("erase", "nl"),
    "verwijder": ("erase", "nl"), "verwijderen": ("erase", "nl"),
    "consent": ("consent", "en"), "toestemming": ("consent", "nl"),
    "accept": ("accept", "en"), "agree": ("accept", "en"), "akkoord": ("accept", "nl"),
    "retention": ("retention", "en"), "bewaartermijn": ("retention", "nl"), "bewaren": ("retention", "nl"),
    "sessions": ("sessions", "en"), "devices": ("sessions", "en"), "sessies": ("sessions", "nl"),
    "apparaten": ("sessions", "nl"),
    "signout": ("signout", "en"), "logout": ("signout", "en"), "afmelden": ("signout", "nl"),
    "uitloggen": ("signout", "nl"),
    "language": ("language", "en"), "taal": ("language", "nl"),
    "requests": ("requests", "en"), "verzoeken": ("requests", "nl"), "status": ("requests", None),
}

# Other words that give the language away when they appear anywhere in the message.
ENGLISH_HINTS = frozenset({"please", "my", "data", "the", "i", "want", "to", "of", "me", "account", "what", "how",
                           "is", "are", "you", "hello", "hi", "thanks", "yes", "no"})
DUTCH_HINTS = frozenset({"graag", "mijn", "gegevens", "de", "het", "ik", "wil", "van", "mij", "account", "wat",
                         "hoe", "is", "zijn", "je", "u", "hallo", "hoi", "dank", "bedankt", "ja", "nee", "een"})

WORD = re.compile(r"[\w'?]+", re.UNICODE)


@dataclass(frozen=True)
class Command:
    name: str  # a value of WORDS, or "unknown"
    args: tuple[str, ...] = ()
    language: str | None = None  # the language the message was written in, when it tells


def detect_language(text: str) -> str | None:
    """'en', 'nl' or None when the words do not tell."""
    words = [w.lower() for w in WORD.findall(text)]
    english = sum(1 for w in words if (WORDS.get(w, ("", None))[1] == "en") or (w in ENGLISH_HINTS
                                                                                 and w not in DUTCH_HINTS))
    dutch = sum(1 for w in words if (WORDS.get(w, ("", None))[1] == "nl") or (w in DUTCH_HINTS
                                                                              and w not in ENGLISH_HINTS))
    if english > dutch:
        return "en"
    if dutch > english:
        return "nl"
    return None


def parse_command(text: str) -> Command:
    parts = text.strip().split()
    if not parts:
        return Command("unknown")
    first = parts[0].lower().lstrip("!/")
    args = parts[1:]
    if first not in WORDS and "-" in first:
        first, _, suffix = first.partition("-")
        args = [parts[0].split("-", 1)[1], *args] if suffix else args
    language = detect_language(text)
    entry = WORDS.get(first)
    if entry is None:
        return Command("unknown", tuple(args), language)
    name, _ = entry
    # `consent accept` / `toestemming akkoord` is an acceptance.
    if name == "consent" and args and WORDS.get(args[0].lower(), ("", None))[0] == "accept":
        name, args = "accept", args[1:]
    return Command(name, tuple(args), language)


def reply_language(command: Command, chosen: str | None, default: str) -> str:
    """The member's explicit choice (`language en`) wins, then what the message shows, then the default."""
    if chosen is not None:
        return chosen
    return command.language or default
