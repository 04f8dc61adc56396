"""HTTP views. docsync speaks Socket.IO over WebSocket only."""

import hmac

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import metrics as counts
from .conf import docsync_settings


def transport_unknown(request: HttpRequest) -> JsonResponse:
    """Refuse HTTP long-polling exactly as the reference server does."""
    return JsonResponse({"code": 0, "message": "Transport unknown"}, status=400)


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus metrics (``docsync.metrics``), for a scrape that sends
    ``Authorization: Bearer <DOCSYNC["METRICS_TOKEN"]>``; 403 for any other
    request, and for every one while ``METRICS_TOKEN`` is not set.

    Route it with one line: ``path("metrics", docsync.views.metrics)``.
    """
    token = docsync_settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token is None or not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return HttpResponse(
            "Forbidden: send Authorization: Bearer <DOCSYNC['METRICS_TOKEN']>.\n",
            status=403,
            content_type="text/plain",
        )
    body, content_type = counts.render()
    return HttpResponse(body, content_type=content_type)
