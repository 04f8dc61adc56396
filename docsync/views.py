"""HTTP views. docsync speaks Socket.IO over WebSocket only."""

from django.http import HttpRequest, JsonResponse


def transport_unknown(request: HttpRequest) -> JsonResponse:
    """Refuse HTTP long-polling exactly as the reference server does."""
    return JsonResponse({"code": 0, "message": "Transport unknown"}, status=400)
