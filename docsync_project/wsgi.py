"""WSGI entry point (admin and REST API only; WebSockets need ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docsync_project.settings")
application = get_wsgi_application()
