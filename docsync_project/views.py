"""The example project's own pages: the landing page with its live demo, guest
sign-in for the demo, and the user documentation of ``docs/``.

None of this is part of the docsync app: it shows a project using it.
"""

from __future__ import annotations

import platform
import re

import django
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.db import connection
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import docsync
from docsync.conf import docsync_settings
from docsync.models import Document

from .markdown import render_markdown

#: The document both demo windows edit: a DocNode ``doc`` (see BINDINGS in
#: settings.py) whose one paragraph holds the text.
DEMO_DOC_ID = "01kdem0000000000000000000p"
DOCS_DIR = settings.BASE_DIR / "docs"
_GUEST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,30}")


def home(request):
    """What is running, links to the admin and the docs, and the live demo."""
    db = connection.settings_dict
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    running = [
        ("docsync", docsync.__version__),
        ("Django", django.get_version()),
        ("Python", platform.python_version()),
        ("Database", f"{connection.vendor} ({db['NAME']})"),
        ("Channel layer", layer.rsplit(".", 1)[-1]),
        ("Provider", docsync_settings.PROVIDER.__name__),
        ("Document types", ", ".join(sorted(docsync_settings.BINDINGS)) or "none"),
        (
            "Unshared documents",
            "open to signed-in users"
            if docsync_settings.OPEN_DOCUMENTS
            else "private to their owner",
        ),
        ("Documents stored", Document.objects.filter(deleted_at__isnull=True).count()),
    ]
    return render(
        request,
        "docsync_project/home.html",
        {
            "running": running,
            "demo_doc_id": DEMO_DOC_ID,
            "guests": settings.DEMO_GUESTS,
            "guest_error": request.session.pop("guest_error", None),
            "docs": _doc_pages(),
        },
    )


@require_POST
def guest_login(request):
    """Create a new account named as asked (never an existing one) and sign in.

    Only when ``DEMO_GUESTS`` is on (the default with ``DEBUG``): a demo
    convenience, not a way to sign up in production.
    """
    if not settings.DEMO_GUESTS:
        raise Http404("Guest accounts are off (DEMO_GUESTS).")
    name = request.POST.get("name", "").strip()
    User = get_user_model()
    error = None
    if not _GUEST_NAME.fullmatch(name):
        error = "Pick a name of 1-30 letters, digits, '.', '-' or '_'."
    elif User.objects.filter(**{User.USERNAME_FIELD: name}).exists():
        error = f"{name!r} is taken: pick another name."
    if error:
        request.session["guest_error"] = error
        return redirect("/#demo")
    user = User.objects.create_user(**{User.USERNAME_FIELD: name})  # no usable password
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("/#demo")


def _doc_pages() -> list[tuple[str, str]]:
    """``(name, title)`` of each page in ``docs/``: the index, then in its order."""
    index = (DOCS_DIR / "README.md").read_text(encoding="utf-8")
    order = re.findall(r"\]\(([\w-]+)\.md\)", index)
    pages = sorted(
        DOCS_DIR.glob("*.md"),
        key=lambda p: (p.stem != "README", order.index(p.stem) if p.stem in order else 99, p.stem),
    )
    return [(path.stem, _title(path)) for path in pages]


def _title(path) -> str:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    return first.lstrip("# ").strip() or path.stem


def docs_page(request, name: str = "README"):
    """A page of ``docs/`` (Markdown) as HTML; ``?raw`` gives the Markdown.

    ``project-readme`` is the repository's README.md, which the docs link to.
    """
    if name == "project-readme":
        source = "README.md"
    elif re.fullmatch(r"[A-Za-z0-9_-]+", name):
        source = f"docs/{name}.md"
    else:
        raise Http404("No such page.")
    path = settings.BASE_DIR / source
    if not path.is_file():
        raise Http404(f"No page {name!r} in docs/.")
    text = path.read_text(encoding="utf-8")
    if "raw" in request.GET:
        return HttpResponse(text, content_type="text/plain; charset=utf-8")
    context = {"body": render_markdown(text, source), "pages": _doc_pages(), "name": name}
    return render(request, "docsync_project/docs.html", context)
