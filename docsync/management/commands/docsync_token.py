"""``manage.py docsync_token USERNAME [--create]``: print a DRF token for a user."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Print the DRF token of a user (creating the token, and with --create the user)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create", action="store_true", help="create the user if it does not exist"
        )

    def handle(self, *args: Any, username: str, create: bool, **options: Any) -> None:
        from rest_framework.authtoken.models import Token

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
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
