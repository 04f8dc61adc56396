"""``manage.py docsync_token USERNAME [--create] [--expires-in SECONDS | --expiring]``.

Prints a DRF token for a user, or with ``--expires-in`` / ``--expiring`` a
signed token that expires (``docsync.tokens``).
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


def _positive(text: str) -> float:
    import argparse

    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


class Command(BaseCommand):
    help = (
        "Print the DRF token of a user (creating the token, and with --create the user), "
        "or with --expires-in / --expiring a signed token that expires."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create", action="store_true", help="create the user if it does not exist"
        )
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument(
            "--expires-in",
            type=_positive,
            metavar="SECONDS",
            help="print a signed token valid for SECONDS instead of the DRF token",
        )
        expiry.add_argument(
            "--expiring",
            action="store_true",
            help="print a signed token valid for DOCSYNC['TOKEN_LIFETIME'] seconds",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        create: bool,
        expires_in: float | None = None,
        expiring: bool = False,
        **options: Any,
    ) -> None:
        User = get_user_model()
        lookup = {User.USERNAME_FIELD: username}
        user = User.objects.filter(**lookup).first()
        if user is None:
            if not create:
                raise CommandError(
                    f"No user {username!r}; pass --create to create it, or use createsuperuser."
                )
            user = User.objects.create_user(**lookup)
            user.set_unusable_password()
            user.save()
        if not user.is_active:
            self.stderr.write(f"Warning: {username!r} is inactive; its tokens are refused.")
        if expires_in is not None or expiring:
            from docsync.tokens import mint_token

            self.stdout.write(mint_token(user, expires_in))
            return
        from rest_framework.authtoken.models import Token

        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
