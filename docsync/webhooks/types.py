"""The event types and the ``DOCSYNC["WEBHOOKS"]`` receivers: no Django models here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import WEBHOOK_EVENTS as EVENT_TYPES

RECEIVER_KEYS = {"url", "secret", "name", "events"}


@dataclass(frozen=True)
class Receiver:
    """Where events go: ``key`` names it in the outbox (``settings:<name>``, ``admin:<pk>``)."""

    key: str
    url: str
    secret: str
    events: frozenset[str] | None = None  # None: every event

    def wants(self, event_type: str) -> bool:
        """Whether this receiver asked for ``event_type``."""
        return self.events is None or event_type in self.events


def parse_events(text: str) -> frozenset[str] | None:
    """The event types of an admin receiver's ``events`` field (empty: every event)."""
    names = frozenset(text.replace(",", " ").split())
    return names or None


def receiver_problem(entry: Any) -> str | None:
    """What is wrong with one ``DOCSYNC["WEBHOOKS"]`` entry, or ``None``."""
    if not isinstance(entry, dict):
        return f"{entry!r} is not a dict"
    unknown = sorted(set(entry) - RECEIVER_KEYS)
    if unknown:
        return f"unknown keys {unknown} (valid: {sorted(RECEIVER_KEYS)})"
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return f"'url' {url!r} is not an http:// or https:// URL"
    if not isinstance(entry.get("secret"), str) or not entry["secret"]:
        return "'secret' must be a non-empty string"
    if not isinstance(entry.get("name", url), str):
        return "'name' must be a string"
    events = entry.get("events")
    if events is not None and (
        not isinstance(events, list | tuple) or not set(events) <= set(EVENT_TYPES)
    ):
        return f"'events' {events!r} must be a list of {', '.join(EVENT_TYPES)}"
    return None


def settings_receivers(value: list[dict[str, Any]]) -> list[Receiver]:
    """The receivers of ``DOCSYNC["WEBHOOKS"]`` (a wrong entry is left out: docsync.E020)."""
    return [
        Receiver(
            key=f"settings:{entry.get('name', entry['url'])}",
            url=entry["url"],
            secret=entry["secret"],
            events=frozenset(entry["events"]) if entry.get("events") is not None else None,
        )
        for entry in value
        if receiver_problem(entry) is None
    ]
