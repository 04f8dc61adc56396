"""``manage.py docsync_webhooks``: a process that sends webhooks (and sweeps for changes)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from docsync.default import default_provider
from docsync.webhooks.pump import WebhookPump, database_of


class Command(BaseCommand):
    help = (
        "Send the webhook outbox's due deliveries and announce changes the servers "
        "left unannounced. Run any number of them (PostgreSQL, MariaDB); with "
        "DOCSYNC['WEBHOOK_IN_SERVER'] = False only these send."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--until-idle",
            action="store_true",
            help="Exit once nothing is due (pending deliveries waiting for their back-off "
            "are left), instead of running until stopped.",
        )

    def handle(self, *args: Any, until_idle: bool, **options: Any) -> None:
        using = database_of(default_provider())
        if using is None:
            raise CommandError(
                "Webhooks need a database-backed provider (ORMProvider or PostgresProvider); "
                "DOCSYNC['PROVIDER'] keeps no database."
            )
        pump = WebhookPump(using)
        try:
            asyncio.run(pump.run(until_idle=until_idle))
        except KeyboardInterrupt:
            pass
        finally:
            pump.executor.shutdown()
