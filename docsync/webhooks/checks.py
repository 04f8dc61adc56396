"""System checks of the webhook settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from .types import receiver_problem


@register()
def check_webhooks(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """``docsync.E020``: a wrong ``DOCSYNC["WEBHOOKS"]`` entry; ``docsync.W020``:
    receivers with a provider that keeps no database."""
    from ..conf import docsync_settings

    try:
        receivers, provider = docsync_settings.WEBHOOKS, docsync_settings.PROVIDER
    except Exception:  # reported by docsync's settings check
        return []
    return _entry_errors(receivers) + _provider_warnings(receivers, provider)


def _entry_errors(receivers: list[Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for i, entry in enumerate(receivers):
        problem = receiver_problem(entry)
        if problem:
            errors.append(_error(f"DOCSYNC['WEBHOOKS'][{i}]: {problem}."))
    names = [e.get("name", e.get("url")) for e in receivers if isinstance(e, dict)]
    for name in sorted({n for n in names if names.count(n) > 1}, key=str):
        errors.append(_error(f"DOCSYNC['WEBHOOKS'] has two receivers named {name!r}."))
    return errors


def _error(message: str) -> Error:
    return Error(
        message,
        hint="Each receiver is {'url': 'https://...', 'secret': '...'}, optionally with "
        "'name' (distinct; default the URL) and 'events' (a list of event types).",
        id="docsync.E020",
    )


def _provider_warnings(receivers: list[Any], provider: Any) -> list[CheckMessage]:
    from ..providers.orm import ORMProvider

    db_backed = isinstance(provider, ORMProvider) or (
        isinstance(provider, type) and issubclass(provider, ORMProvider)
    )
    if not receivers or db_backed:
        return []
    return [
        Warning(
            "DOCSYNC['WEBHOOKS'] is set, but DOCSYNC['PROVIDER'] keeps no database: "
            "no webhook will be sent.",
            hint="Webhooks are written to an outbox table in the provider's database: use "
            "docsync.providers.orm.ORMProvider or docsync.providers.postgres.PostgresProvider.",
            id="docsync.W020",
        )
    ]
