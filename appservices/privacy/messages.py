"""Every text the bot sends, in Dutch and English. `text(lang, key, **values)` fills the placeholders."""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "help": {
        "nl": ("Ik ben de privacybot van deze server. Stuur me een van deze opdrachten:\n"
               "- export: ontvang een archief (ZIP) van al je gegevens\n"
               "- wis: laat je account en gegevens verwijderen (met bevestigingscode)\n"
               "- toestemming: bekijk het privacybeleid; 'toestemming akkoord' om in te stemmen\n"
               "- bewaartermijn: hoe lang we wat bewaren\n"
               "- sessies: je apparaten met IP-adressen; 'afmelden <apparaat>' om er een af te melden\n"
               "- verzoeken: je privacyverzoeken en hun status\n"
               "- taal en / taal nl: antwoordtaal kiezen\n"
               "- help: dit overzicht"),
        "en": ("I am this server's privacy bot. Send me one of these commands:\n"
               "- export: receive an archive (ZIP) of all your data\n"
               "- erase: have your account and data removed (with a confirmation code)\n"
               "- consent: see the privacy policy; 'consent accept' to agree\n"
               "- retention: how long we keep what\n"
               "- sessions: your devices with IP addresses; 'signout <device>' to sign one out\n"
               "- requests: your privacy requests and their status\n"
               "- language en / language nl: choose the reply language\n"
               "- help: this overview"),
    },
    "unknown": {
        "nl": "Die opdracht ken ik niet. Stuur 'help' voor een overzicht.",
        "en": "I do not know that command. Send 'help' for an overview.",
    },
    "language_set": {"nl": "Ik antwoord voortaan in het Nederlands.", "en": "I will answer in English from now on."},
    "language_bad": {"nl": "Kies 'taal nl' of 'taal en'.", "en": "Choose 'language nl' or 'language en'."},
    "export_started": {
        "nl": "Verzoek {request_id}: ik stel je gegevensexport samen. Dit kan even duren.",
        "en": "Request {request_id}: I am putting your data export together. This may take a while.",
    },
    "export_progress": {
        "nl": "Verzoek {request_id}: {count} berichten verzameld...",
        "en": "Request {request_id}: {count} messages collected...",
    },
    "export_ready": {
        "nl": ("Verzoek {request_id}: je export is klaar ({size} bytes, versleuteld). Download het bestand "
               "hieronder; het wordt op {expires} verwijderd."),
        "en": ("Request {request_id}: your export is ready ({size} bytes, encrypted). Download the file "
               "below; it will be deleted at {expires}."),
    },
    "export_unreachable": {
        "nl": "Deze gegevens kon de server niet leveren: {classes}. Het archief vermeldt dit.",
        "en": "The server could not provide this data: {classes}. The archive says so.",
    },
    "export_failed": {
        "nl": "Verzoek {request_id}: de export is mislukt ({error}). Probeer het later opnieuw.",
        "en": "Request {request_id}: the export failed ({error}). Please try again later.",
    },
    "erase_confirm": {
        "nl": ("Verzoek {request_id}: weet je het zeker? Je account wordt gedeactiveerd, je berichten "
               "verwijderd (berichten in openbare ruimtes blijven {public}), je media, profiel en IP-log gewist. "
               "Dit kan niet ongedaan worden gemaakt. Stuur 'wis {code}' binnen {minutes} minuten om te "
               "bevestigen."),
        "en": ("Request {request_id}: are you sure? Your account will be deactivated, your messages removed "
               "(messages in public rooms {public_en}), your media, profile and IP log wiped. This cannot be "
               "undone. Send 'erase {code}' within {minutes} minutes to confirm."),
    },
    "erase_bad_code": {
        "nl": "Die code klopt niet of is verlopen. Stuur 'wis' voor een nieuwe code.",
        "en": "That code is wrong or has expired. Send 'erase' for a new code.",
    },
    "erase_started": {
        "nl": "Verzoek {request_id}: bevestigd. Ik verwijder je gegevens nu.",
        "en": "Request {request_id}: confirmed. I am removing your data now.",
    },
    "erase_report": {
        "nl": "Verzoek {request_id}: verwijdering voltooid.\nVerwijderd:\n{removed}\nBewaard:\n{kept}",
        "en": "Request {request_id}: erasure complete.\nRemoved:\n{removed}\nKept:\n{kept}",
    },
    "erase_failed": {
        "nl": "Verzoek {request_id}: de verwijdering is mislukt ({error}). Een beheerder kijkt ernaar.",
        "en": "Request {request_id}: the erasure failed ({error}). An administrator will look into it.",
    },
    "consent_status": {
        "nl": ("Het privacybeleid (versie {version}) staat op {url}\n{state}\n"
               "Stuur 'toestemming akkoord' om in te stemmen."),
        "en": "The privacy policy (version {version}) is at {url}\n{state}\nSend 'consent accept' to agree.",
    },
    "consent_given_state": {"nl": "Je stemde in op {when}.", "en": "You agreed on {when}."},
    "consent_missing_state": {"nl": "Je hebt nog niet ingestemd.", "en": "You have not agreed yet."},
    "consent_none": {"nl": "Er is geen privacybeleid ingesteld.", "en": "No privacy policy is configured."},
    "consent_recorded": {
        "nl": "Verzoek {request_id}: je instemming met versie {version} is vastgelegd.",
        "en": "Request {request_id}: your consent to version {version} is recorded.",
    },
    "consent_already": {
        "nl": "Je stemde al in met versie {version}.", "en": "You already agreed to version {version}.",
    },
    "retention": {
        "nl": ("Bewaartermijnen:\n- Accounts die {days} dagen niet gebruikt zijn: eerst een waarschuwing, "
               "{warn} dagen later verwijderd.\n- Ruimtegeschiedenis: {rooms}\n{kept}"),
        "en": ("Retention:\n- Accounts unused for {days} days: a warning first, erased {warn} days later.\n"
               "- Room history: {rooms}\n{kept}"),
    },
    "retention_rooms_policy": {
        "nl": "volgens het m.room.retention-beleid van de ruimte, tussen {min} en {max} dagen",
        "en": "following each room's m.room.retention policy, between {min} and {max} days",
    },
    "retention_kept": {"nl": "- {cls} wordt bewaard: {why}", "en": "- {cls} is kept: {why}"},
    "retention_inactive_off": {"nl": "nooit", "en": "never"},
    "sessions": {
        "nl": "Je sessies:\n{lines}\nStuur 'afmelden <apparaat>' om een sessie af te melden.",
        "en": "Your sessions:\n{lines}\nSend 'signout <device>' to sign a session out.",
    },
    "session_line": {
        "nl": "- {device_id} {name}: IP {ip}, laatst gezien {seen}",
        "en": "- {device_id} {name}: IP {ip}, last seen {seen}",
    },
    "sessions_none": {"nl": "Je hebt geen sessies.", "en": "You have no sessions."},
    "signout_missing": {
        "nl": "Welk apparaat? Stuur 'afmelden <apparaat>'.", "en": "Which device? Send 'signout <device>'.",
    },
    "signout_done": {
        "nl": "Verzoek {request_id}: sessie {device_id} is afgemeld.",
        "en": "Request {request_id}: session {device_id} is signed out.",
    },
    "signout_unknown": {
        "nl": "Je hebt geen sessie {device_id}.", "en": "You have no session {device_id}.",
    },
    "requests": {"nl": "Je privacyverzoeken:\n{lines}", "en": "Your privacy requests:\n{lines}"},
    "requests_none": {"nl": "Je hebt geen privacyverzoeken.", "en": "You have no privacy requests."},
    "login_notice": {
        "nl": ("Nieuwe aanmelding op je account: {what} (apparaat {device_id}, IP {ip}, {user_agent}) om {when}. "
               "Was jij dit niet? Stuur '{command}' om die sessie direct af te melden, en wijzig je wachtwoord."),
        "en": ("New sign-in to your account: {what} (device {device_id}, IP {ip}, {user_agent}) at {when}. "
               "Was this not you? Send '{command}' to sign that session out at once, and change your password."),
    },
    "login_new_ip": {"nl": "een nieuw IP-adres", "en": "a new IP address"},
    "login_new_device": {"nl": "een nieuw apparaat", "en": "a new device"},
    "inactivity_warning": {
        "nl": ("Je account is sinds {since} niet gebruikt. Volgens ons bewaarbeleid wordt het na {date} "
               "verwijderd als je niet meer inlogt. Log in om het te behouden."),
        "en": ("Your account has not been used since {since}. Under our retention policy it will be erased "
               "after {date} unless you sign in. Sign in to keep it."),
    },
    "busy": {
        "nl": "Er loopt al een {kind}-verzoek ({request_id}). Even geduld.",
        "en": "A {kind} request ({request_id}) is already running. Please wait.",
    },
}


def text(language: str, key: str, **values: Any) -> str:
    entry = MESSAGES[key]
    return entry.get(language, entry["nl"]).format(**values)
