"""Every visible string of the waiting page, the phase pages of a scheduled room and the error
page, per language.

A language needs every key of English (missing ones fall back to it); ``{n}``, ``{low}``,
``{high}`` are placeholders that the renderer and the page script fill the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")

#: Every visible string of the waiting page, per language. ``{n}``, ``{low}``, ``{high}`` are
#: placeholders filled by the renderer and by the page script (the same rules in both).
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "You’re in the queue",
        "room_label": "Waiting room",
        "waiting_heading": "You’re in the queue",
        "waiting_lead": (
            "This page updates by itself. Keep it open: when it’s your turn, you’ll be taken "
            "to the site automatically."
        ),
        "position_label": "Your place in line",
        "ahead_label": "People ahead of you",
        "queue_label": "People in the queue",
        "eta_label": "Estimated wait",
        "progress_label": "Your progress toward the front",
        "eta_unknown": "calculating…",
        "eta_soon": "less than a minute",
        "eta_minute": "about 1 minute",
        "eta_minutes": "about {n} minutes",
        "eta_range_minutes": "about {low}–{high} minutes",
        "eta_hour": "about 1 hour",
        "eta_hours": "about {n} hours",
        "eta_range_hours": "about {low}–{high} hours",
        "announce_position": "You are number {n} in line.",
        "announce_next": "You are next in line.",
        "admitted_heading": "It’s your turn!",
        "admitted_text": "Taking you to the site now…",
        "admitted_link": "Continue to the site",
        "expired_heading": "Your place has expired",
        "expired_text": (
            "This page was inactive for too long, so your place in the queue was released."
        ),
        "rejoin": "Rejoin the queue",
        "challenge_heading": "Checking your browser",
        "challenge_text": (
            "Your browser is doing a short calculation before it joins the queue, which keeps "
            "bots from taking places. It takes a few seconds: keep this page open."
        ),
        "challenge_noscript": (
            "This waiting room asks your browser for a short calculation before it joins the "
            "queue: please turn on JavaScript and reload the page."
        ),
        "challenge_failed": "The check could not finish. Reload the page to try again.",
        "moved_heading": "This session belongs to another browser",
        "moved_text": (
            "This site keeps a visit to the browser and network that were let in. This one "
            "is different, so it has to join the queue itself."
        ),
        "used_heading": "This place was already used",
        "used_text": (
            "Another browser or tab went in with this place, or it was given up: each place "
            "lets one visitor in, once. If that was not you, join the queue again."
        ),
        "rejected_heading": "Sold out",
        "rejected_text": "Sorry, this event is no longer accepting visitors.",
        "full_heading": "The waiting room is full",
        "full_text": "Too many people are waiting right now. Please try again in a little while.",
        "try_again": "Try again",
        "left_heading": "You left the queue",
        "left_text": "Your place has been given up. You can join again at any time.",
        "leave": "Leave the queue",
        "reconnecting": "Reconnecting…",
        "noscript_hint": "This page reloads by itself every {n} seconds.",
        "footer": "You keep your place as long as this page stays open.",
        "error_retry": "Try again",
        "back_to_site": "Back to the site",
        "thousands_separator": ",",
        "idle_title": "The sale has not started",
        "idle_lead": "Tickets are given from:",
        "prequeue_title": "You are in the pre-queue",
        "prequeue_lead": (
            "Keep this page open. When the sale starts, everyone in the pre-queue gets a place "
            "in a random order, drawn fairly; then you will see your position. It starts at:"
        ),
        "ended_title": "The sale has ended",
        "ended_lead": "This sale is over; nobody new can enter.",
        "countdown_hours": "Starts in {h} h {m} min",
        "countdown_minutes": "Starts in {m} min {s} s",
        "countdown_seconds": "Starts in {s} s",
        "commitment_label": "Draw commitment (SHA-256 of the seed):",
    },
    "de": {
        "page_title": "Sie sind in der Warteschlange",
        "room_label": "Warteraum",
        "waiting_heading": "Sie sind in der Warteschlange",
        "waiting_lead": (
            "Diese Seite aktualisiert sich selbst. Lassen Sie sie geöffnet: Wenn Sie an der "
            "Reihe sind, werden Sie automatisch weitergeleitet."
        ),
        "position_label": "Ihr Platz",
        "ahead_label": "Personen vor Ihnen",
        "queue_label": "Personen in der Warteschlange",
        "eta_label": "Geschätzte Wartezeit",
        "progress_label": "Ihr Fortschritt nach vorne",
        "eta_unknown": "wird berechnet…",
        "eta_soon": "weniger als eine Minute",
        "eta_minute": "etwa 1 Minute",
        "eta_minutes": "etwa {n} Minuten",
        "eta_range_minutes": "etwa {low}–{high} Minuten",
        "eta_hour": "etwa 1 Stunde",
        "eta_hours": "etwa {n} Stunden",
        "eta_range_hours": "etwa {low}–{high} Stunden",
        "announce_position": "Sie sind Nummer {n} in der Warteschlange.",
        "announce_next": "Sie sind als Nächstes an der Reihe.",
        "admitted_heading": "Sie sind an der Reihe!",
        "admitted_text": "Sie werden jetzt weitergeleitet…",
        "admitted_link": "Weiter zur Website",
        "expired_heading": "Ihr Platz ist abgelaufen",
        "expired_text": (
            "Diese Seite war zu lange inaktiv, daher wurde Ihr Platz in der Warteschlange "
            "freigegeben."
        ),
        "rejoin": "Erneut anstellen",
        "challenge_heading": "Ihr Browser wird geprüft",
        "challenge_text": (
            "Ihr Browser führt eine kurze Berechnung aus, bevor er sich anstellt; so nehmen "
            "Bots keine Plätze weg. Das dauert einige Sekunden: Lassen Sie die Seite geöffnet."
        ),
        "challenge_noscript": (
            "Dieser Warteraum verlangt vor dem Anstellen eine kurze Berechnung Ihres Browsers: "
            "Bitte aktivieren Sie JavaScript und laden Sie die Seite neu."
        ),
        "challenge_failed": (
            "Die Prüfung konnte nicht abgeschlossen werden. Laden Sie die Seite neu."
        ),
        "moved_heading": "Diese Sitzung gehört zu einem anderen Browser",
        "moved_text": (
            "Diese Website bindet einen Besuch an den Browser und das Netz, die eingelassen "
            "wurden. Dieser ist ein anderer und muss sich selbst anstellen."
        ),
        "used_heading": "Dieser Platz wurde bereits genutzt",
        "used_text": (
            "Ein anderer Browser oder Tab ist mit diesem Platz eingetreten, oder er wurde "
            "aufgegeben: Jeder Platz lässt eine Person einmal ein. Waren Sie das nicht, stellen "
            "Sie sich erneut an."
        ),
        "rejected_heading": "Ausverkauft",
        "rejected_text": "Leider werden keine weiteren Besucher mehr eingelassen.",
        "full_heading": "Der Warteraum ist voll",
        "full_text": (
            "Gerade warten zu viele Personen. Bitte versuchen Sie es in Kürze noch einmal."
        ),
        "try_again": "Erneut versuchen",
        "left_heading": "Sie haben die Warteschlange verlassen",
        "left_text": "Ihr Platz wurde freigegeben. Sie können sich jederzeit neu anstellen.",
        "leave": "Warteschlange verlassen",
        "reconnecting": "Verbindung wird wiederhergestellt…",
        "noscript_hint": "Diese Seite lädt sich alle {n} Sekunden selbst neu.",
        "footer": "Sie behalten Ihren Platz, solange diese Seite geöffnet bleibt.",
        "error_retry": "Erneut versuchen",
        "back_to_site": "Zurück zur Website",
        "thousands_separator": ".",
        "idle_title": "Der Verkauf hat noch nicht begonnen",
        "idle_lead": "Tickets gibt es ab:",
        "prequeue_title": "Sie sind in der Vorwarteschlange",
        "prequeue_lead": (
            "Lassen Sie diese Seite geöffnet. Zum Verkaufsstart erhält jeder in der "
            "Vorwarteschlange einen Platz in zufälliger, fair gezogener Reihenfolge; dann sehen "
            "Sie Ihre Position. Beginn:"
        ),
        "ended_title": "Der Verkauf ist beendet",
        "ended_lead": "Dieser Verkauf ist vorbei; niemand kann mehr eintreten.",
        "countdown_hours": "Beginnt in {h} Std. {m} Min.",
        "countdown_minutes": "Beginnt in {m} Min. {s} Sek.",
        "countdown_seconds": "Beginnt in {s} Sek.",
        "commitment_label": "Verpflichtung der Ziehung (SHA-256 des Seeds):",
    },
}


_TITLE_KEYS = {
    "waiting": "page_title",
    "admitted": "admitted_heading",
    "expired": "expired_heading",
    "used": "used_heading",
    "challenge": "challenge_heading",
    "rejected": "rejected_heading",
    "full": "full_heading",
    "left": "left_heading",
    "idle": "idle_title",
    "prequeue": "prequeue_title",
    "ended": "ended_title",
}


def title_for(status: str, messages: Mapping[str, str]) -> str:
    """The document title of the page in ``status``: a sold-out or full room must not be
    titled "You're in the queue" (the tab is what a visitor sees first). The page script
    applies the same table when the status changes (see ``waitroom.js``)."""
    return messages[_TITLE_KEYS.get(status, "page_title")]


def _fill(template: str, **values: object) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def countdown_text(seconds: int, messages: Mapping[str, str]) -> str:
    """``Starts in 2 h 05 min``, ``… 4 min 10 s``, ``… 9 s``: a countdown worded for the page.
    The phase page's script applies the same rules every second (``templates/phase.html``)."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return _fill(messages["countdown_hours"], h=hours, m=f"{minutes:02d}")
    if minutes:
        return _fill(messages["countdown_minutes"], m=minutes, s=f"{secs:02d}")
    return _fill(messages["countdown_seconds"], s=secs)


def format_eta(eta_seconds: object, messages: Mapping[str, str]) -> str:
    """The ETA as a range in words ("about 2–3 minutes"), from ``{"p50": s, "p90": s}``.

    The page script applies the same rules when it updates the page (see ``waitroom.js``).
    """
    if not isinstance(eta_seconds, Mapping):
        return messages["eta_unknown"]
    p50 = number(eta_seconds.get("p50"))
    p90 = number(eta_seconds.get("p90"))
    if p50 is None and p90 is None:
        return messages["eta_unknown"]
    p50 = p50 if p50 is not None else p90
    p90 = p90 if p90 is not None else p50
    assert p50 is not None and p90 is not None
    p50, p90 = max(0.0, p50), max(0.0, p90, p50)
    if p90 < 60:
        return messages["eta_soon"]
    unit_seconds, one, many, span = 60, "eta_minute", "eta_minutes", "eta_range_minutes"
    if p50 >= 90 * 60:
        unit_seconds, one, many, span = 3600, "eta_hour", "eta_hours", "eta_range_hours"
    low = max(1, math.floor(p50 / unit_seconds + 0.5))
    high = max(low, math.ceil(p90 / unit_seconds))
    if low == high:
        return messages[one] if low == 1 else _fill(messages[many], n=low)
    return _fill(messages[span], low=low, high=high)


def number(value: object) -> float | None:
    """A finite number from a JSON value (not a boolean), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def count(value: object) -> int | None:
    """A non-negative whole number from a JSON value, or None."""
    found = number(value)
    return None if found is None or found < 0 else int(found)


def format_count(value: int | None, messages: Mapping[str, str]) -> str:
    if value is None:
        return "—"
    return f"{value:,}".replace(",", messages.get("thousands_separator", ","))


def pick_language(lang: str, messages: Mapping[str, Mapping[str, str]]) -> str:
    wanted = lang.strip().lower().replace("_", "-")
    if wanted in messages:
        return wanted
    primary = wanted.split("-", 1)[0]
    return primary if primary in messages else "en"


_LANGUAGE_RANGE_RE = re.compile(r"^(?:\*|[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*)$")
_Q_RE = re.compile(r"^[qQ]=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")
MAX_ACCEPT_LANGUAGE = 1024
"""Characters of an ``Accept-Language`` header read (browsers send a few dozen)."""


def negotiate(accept_language: str | None, languages: Mapping[str, object]) -> str:
    """The page language for an ``Accept-Language`` header (RFC 9110 §12.5.4): the shipped
    language of the highest weight, a region falling back to its language (``de-AT`` →
    ``de``); English when nothing matches. A malformed entry is skipped, never an error.
    """
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language[:MAX_ACCEPT_LANGUAGE].split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        weight = 1.0
        if params:
            q = _Q_RE.match(params.strip())
            if q is None:
                continue
            weight = float(q.group(1))
        if weight <= 0 or not _LANGUAGE_RANGE_RE.match(tag) or tag == "*":
            continue
        ranked.append((-weight, index, tag))
    for _, _, tag in sorted(ranked):
        wanted = tag.lower().replace("_", "-")
        if wanted in languages:
            return wanted
        primary = wanted.split("-", 1)[0]
        if primary in languages:
            return primary
    return "en"
