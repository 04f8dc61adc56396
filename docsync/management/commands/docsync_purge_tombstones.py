"""``manage.py docsync_purge_tombstones --older-than 30d``: forget old deletions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from docsync.default import default_provider
from docsync.providers.orm import ORMProvider

UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_age(value: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` as a ``timedelta``."""
    match = re.fullmatch(r"\s*(\d+)\s*([wdhms])\s*", value.lower())
    if not match:
        raise CommandError(
            f"Invalid age {value!r}: use a number and a unit, such as 30d, 12h, 90m "
            "(units: w, d, h, m, s)."
        )
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = (
        "Delete the tombstones of documents deleted longer ago than --older-than. "
        "A purged document id can be used again, so a client that still holds a "
        "copy could bring it back: keep tombstones longer than clients stay offline."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", required=True, type=parse_age, help="Age such as 30d, 12h or 90m."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the tombstones, delete nothing."
        )

    def handle(
        self, *args: Any, older_than: timedelta, dry_run: bool, verbosity: int, **options: Any
    ) -> None:
        provider = default_provider()
        if not isinstance(provider, ORMProvider):
            raise CommandError(
                f"docsync_purge_tombstones needs docsync's ORMProvider, but "
                f"DOCSYNC['PROVIDER'] is {type(provider).__name__}."
            )
        if dry_run:
            count = provider.tombstones(older_than).count()
            self.stdout.write(f"{count} tombstone(s) older than {older_than} would be purged.")
            return
        count = provider.purge_tombstones(older_than)
        if verbosity:
            self.stdout.write(f"Purged {count} tombstone(s) older than {older_than}.")
